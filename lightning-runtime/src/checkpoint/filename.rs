//! Checkpoint file name templates, as Lightning's `ModelCheckpoint.format_checkpoint_name`
//! reads them: `"{epoch}-{val_loss:.2f}"` renders as `epoch=2-val_loss=0.12` (with
//! `auto_insert_metric_name`), each `{name}` or `{name:spec}` taking the metric's value
//! formatted by Python's format-spec mini-language (`.2f`, `03d`, `.3e`, `g`, `%`, widths, fill
//! and alignment), a metric that is missing rendering as `0`. `{{` and `}}` are literal braces.

use crate::Error;
use std::collections::BTreeMap;

/// A value to render: Lightning's metrics are tensors, integer for `epoch`, `step` and a
/// missing metric (`torch.tensor(0)`), floating point for logged values.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum TemplateValue {
    Int(i64),
    Float(f64),
}

/// A parsed template.
#[derive(Clone, PartialEq, Debug)]
pub(crate) struct FilenameTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, PartialEq, Debug)]
enum Part {
    Literal(String),
    Field { name: String, spec: Spec },
}

/// Python's `[[fill]align][sign][0][width][.precision][type]`.
#[derive(Clone, PartialEq, Debug, Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    kind: Option<char>,
}

impl FilenameTemplate {
    /// Parses `template`; an unclosed `{`, a lone `}`, an empty `{}` or a format spec Python
    /// would refuse is an error naming `flag`.
    pub(crate) fn parse(template: &str, flag: &'static str) -> Result<Self, Error> {
        let bad = |what: String| {
            Error::config(
                flag,
                format!(
                    "the template {template:?} {what}; write metrics as `{{name}}` or `{{name:.2f}}`, and literal braces as `{{{{` and `}}}}`"
                ),
            )
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(bad("has a `}` that closes nothing".into())),
                '{' => {
                    let mut field = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        match c {
                            '}' => {
                                closed = true;
                                break;
                            }
                            '{' => return Err(bad("has a `{` inside a field".into())),
                            c => field.push(c),
                        }
                    }
                    if !closed {
                        return Err(bad("has a `{` that is never closed".into()));
                    }
                    let (name, spec) = field.split_once(':').unwrap_or((&field, ""));
                    if name.is_empty() {
                        return Err(bad("has a field without a metric name".into()));
                    }
                    let spec = Spec::parse(spec)
                        .ok_or_else(|| bad(format!("has a format spec `{spec}` that is not valid")))?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field {
                        name: name.to_string(),
                        spec,
                    });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The metric names the template uses.
    #[cfg(test)]
    fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { name, .. } => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The rendered name: with `auto_insert_metric_name`, each field is preceded by `name=`
    /// (Lightning's `CHECKPOINT_EQUALS_CHAR`). A metric missing from `metrics` renders as `0`.
    pub(crate) fn render(&self, metrics: &BTreeMap<String, TemplateValue>, auto_insert_metric_name: bool) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field { name, spec } => {
                    if auto_insert_metric_name {
                        out.push_str(name);
                        out.push('=');
                    }
                    let value = metrics.get(name).copied().unwrap_or(TemplateValue::Int(0));
                    out.push_str(&spec.format(value));
                }
            }
        }
        out
    }
}

impl Spec {
    fn parse(spec: &str) -> Option<Self> {
        let chars: Vec<char> = spec.chars().collect();
        let mut i = 0;
        let mut out = Spec::default();
        let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
        if chars.len() >= 2 && is_align(chars[1]) {
            out.fill = Some(chars[0]);
            out.align = Some(chars[1]);
            i = 2;
        } else if chars.first().copied().is_some_and(is_align) {
            out.align = Some(chars[0]);
            i = 1;
        }
        if let Some(&c) = chars.get(i)
            && matches!(c, '+' | '-' | ' ')
        {
            out.sign = Some(c);
            i += 1;
        }
        if chars.get(i) == Some(&'0') {
            out.zero = true;
            i += 1;
        }
        let digits = |i: &mut usize| {
            let start = *i;
            while chars.get(*i).is_some_and(char::is_ascii_digit) {
                *i += 1;
            }
            (*i > start).then(|| chars[start..*i].iter().collect::<String>().parse::<usize>().ok())
        };
        if let Some(width) = digits(&mut i) {
            out.width = width?;
        }
        if chars.get(i) == Some(&'.') {
            i += 1;
            out.precision = Some(digits(&mut i)??);
        }
        if let Some(&c) = chars.get(i) {
            if !matches!(c, 'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G' | '%' | 'n') {
                return None;
            }
            out.kind = Some(c);
            i += 1;
        }
        // Python refuses a precision for integers.
        if out.kind.is_some_and(|k| matches!(k, 'd' | 'n')) && out.precision.is_some() {
            return None;
        }
        (i == chars.len()).then_some(out)
    }

    fn format(&self, value: TemplateValue) -> String {
        let (negative, digits) = match (value, self.kind) {
            // `d` of a float: Python raises; a whole number of steps or epochs logged as a float
            // is what users mean, so it renders truncated.
            (TemplateValue::Int(v), None | Some('d' | 'n')) => (v < 0, v.unsigned_abs().to_string()),
            (TemplateValue::Float(v), Some('d' | 'n')) => (v < 0.0, (v.trunc().abs() as i64).to_string()),
            (TemplateValue::Int(v), Some(kind)) => float_digits(v as f64, kind, self.precision),
            (TemplateValue::Float(v), kind) => match (kind, self.precision) {
                (None, None) => (v.is_sign_negative() && !v.is_nan(), python_repr(v.abs())),
                (None, Some(_)) => float_digits(v, 'g', self.precision),
                (Some(kind), precision) => float_digits(v, kind, precision),
            },
        };
        let sign = match (negative, self.sign) {
            (true, _) => "-",
            (false, Some('+')) => "+",
            (false, Some(' ')) => " ",
            _ => "",
        };
        let len = sign.chars().count() + digits.chars().count();
        let pad = self.width.saturating_sub(len);
        // Numbers align right unless told otherwise; a leading `0` pads zeros after the sign.
        let (fill, align) = match (self.fill, self.align, self.zero) {
            (fill, Some(align), _) => (fill.unwrap_or(' '), align),
            (None, None, true) => ('0', '='),
            _ => (' ', '>'),
        };
        let fill = |n: usize| fill.to_string().repeat(n);
        match align {
            '<' => format!("{sign}{digits}{}", fill(pad)),
            '^' => format!("{}{sign}{digits}{}", fill(pad / 2), fill(pad - pad / 2)),
            '=' => format!("{sign}{}{digits}", fill(pad)),
            _ => format!("{}{sign}{digits}", fill(pad)),
        }
    }
}

/// The digits of `|v|` in a float presentation (`f`, `e`, `g`, `%`), and whether `v` is
/// negative, as Python writes them (`inf`, `nan`, two-digit exponents with a sign).
fn float_digits(v: f64, kind: char, precision: Option<usize>) -> (bool, String) {
    let negative = v.is_sign_negative() && !v.is_nan();
    let upper = kind.is_ascii_uppercase();
    let a = v.abs();
    if !a.is_finite() {
        let text = if a.is_nan() { "nan" } else { "inf" };
        return (negative, if upper { text.to_uppercase() } else { text.into() });
    }
    let p = precision.unwrap_or(6);
    let text = match kind.to_ascii_lowercase() {
        'f' => format!("{a:.p$}"),
        'e' => python_exponent(&format!("{a:.p$e}")),
        '%' => format!("{:.p$}%", a * 100.0),
        _ => general(a, p.max(1)),
    };
    (negative, if upper { text.to_uppercase() } else { text })
}

/// Python's `g`: scientific when the exponent is below -4 or at least the precision, else
/// fixed; trailing zeros removed.
fn general(a: f64, p: usize) -> String {
    if a == 0.0 {
        return "0".into();
    }
    let scientific = format!("{a:.prec$e}", prec = p - 1);
    let exponent: i32 = scientific
        .rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if exponent < -4 || exponent >= p as i32 {
        let (mantissa, _) = scientific.split_once('e').unwrap_or((&scientific, ""));
        python_exponent(&format!("{}e{exponent}", trim(mantissa.to_string())))
    } else {
        let decimals = (p as i32 - 1 - exponent).max(0) as usize;
        trim(format!("{a:.decimals$}"))
    }
}

/// Rust's `1.5e-5` as Python's `1.5e-05`.
fn python_exponent(text: &str) -> String {
    let Some((mantissa, exponent)) = text.split_once('e') else {
        return text.to_string();
    };
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Python's `str(float)` of a non-negative value: the shortest text that reads back the same,
/// with `.0` on whole numbers and an exponent below 1e-4 or from 1e16.
fn python_repr(a: f64) -> String {
    if a.is_nan() {
        return "nan".into();
    }
    if a.is_infinite() {
        return "inf".into();
    }
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let text = format!("{a:e}");
        let text = match text.split_once('e') {
            Some((mantissa, exponent)) if !mantissa.contains('.') => format!("{mantissa}e{exponent}"),
            _ => text,
        };
        return python_exponent(&text);
    }
    let text = format!("{a}");
    if text.contains('.') { text } else { format!("{text}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, metrics: &[(&str, TemplateValue)], auto: bool) -> String {
        let metrics = metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        FilenameTemplate::parse(template, "filename")
            .unwrap()
            .render(&metrics, auto)
    }

    use TemplateValue::{Float, Int};

    #[test]
    fn renders_lightnings_docstring_examples() {
        assert_eq!(render("{epoch}", &[("epoch", Int(0))], true), "epoch=0");
        assert_eq!(render("{epoch:03d}", &[("epoch", Int(5))], true), "epoch=005");
        assert_eq!(
            render(
                "{epoch}-{val_loss:.2f}",
                &[("epoch", Int(2)), ("val_loss", Float(0.123456))],
                true
            ),
            "epoch=2-val_loss=0.12"
        );
        assert_eq!(
            render(
                "epoch={epoch}-validation_loss={val_loss:.2f}",
                &[("epoch", Int(2)), ("val_loss", Float(0.123456))],
                false
            ),
            "epoch=2-validation_loss=0.12"
        );
        assert_eq!(render("{missing:d}", &[], true), "missing=0");
        assert_eq!(render("{step}", &[("step", Int(0))], true), "step=0");
        assert_eq!(
            render(
                "checkpoint_{epoch:02d}-{acc:02.0f}",
                &[("epoch", Int(1)), ("acc", Float(1.12))],
                true
            ),
            "checkpoint_epoch=01-acc=01"
        );
        assert_eq!(
            render(
                "epoch{epoch:02d}-val_loss{val/loss:.2f}",
                &[("epoch", Int(2)), ("val/loss", Float(0.3249))],
                false
            ),
            "epoch02-val_loss0.32"
        );
    }

    #[test]
    fn formats_floats_as_python_does() {
        let f = |spec: &str, v: f64| render(&format!("{{x{spec}}}"), &[("x", Float(v))], false);
        assert_eq!(f("", 0.5), "0.5");
        assert_eq!(f("", 2.0), "2.0");
        assert_eq!(f("", 1e-5), "1e-05");
        assert_eq!(f("", f64::NAN), "nan");
        assert_eq!(f("", -f64::INFINITY), "-inf");
        assert_eq!(f(":.3e", 12345.678), "1.235e+04");
        assert_eq!(f(":g", 0.0001234), "0.0001234");
        assert_eq!(f(":g", 1234567.0), "1.23457e+06");
        assert_eq!(f(":.1%", 0.256), "25.6%");
        assert_eq!(f(":+.1f", 2.0), "+2.0");
        assert_eq!(f(":>8.2f", -1.5), "   -1.50");
        assert_eq!(f(":*<6.1f", 1.0), "1.0***");
        assert_eq!(f(":08.3f", -1.23456), "-001.235");
        assert_eq!(f(":.2f", f64::NAN), "nan");
    }

    #[test]
    fn escaped_braces_are_literal_and_names_keep_their_characters() {
        let template = FilenameTemplate::parse("{{x}}-{val/acc}-{a.b:.1f}", "filename").unwrap();
        assert_eq!(template.names().collect::<Vec<_>>(), ["val/acc", "a.b"]);
        assert_eq!(render("{{x}}-{n}", &[("n", Int(3))], true), "{x}-n=3");
    }

    #[test]
    fn bad_templates_are_errors_naming_the_flag() {
        for bad in ["{epoch", "epoch}", "{}", "{a:.2q}", "{a:.2d}", "{a{b}}"] {
            let error = FilenameTemplate::parse(bad, "filename").unwrap_err().to_string();
            assert!(error.starts_with("invalid `filename`:"), "{bad}: {error}");
        }
    }
}
