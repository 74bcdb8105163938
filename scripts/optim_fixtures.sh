#!/usr/bin/env bash
# Regenerates tests/fixtures/adamw_groups.json, cosine_groups.json, ema_averaging.json, swa.json
# and backbone_finetuning.json: what torch and PyTorch Lightning compute for param groups, weight
# averaging and fine-tuning (see scripts/optim_fixtures.py), which tests/param_groups.rs,
# tests/weight_averaging.rs and tests/finetuning.rs compare with. Run by hand from anywhere in the
# checkout (CI does not run it; the tests need only the committed files):
#
#   bash scripts/optim_fixtures.sh              # writes under tests/fixtures/
#   bash scripts/optim_fixtures.sh out/dir      # writes under out/dir instead
#
# It uses the virtual environment .venv/ that scripts/python_venv.sh makes (torch 2.9.0 and
# pytorch-lightning 2.6.6 from PyPI; the first run downloads about 3.9 GB), then runs
# scripts/optim_fixtures.py (about 10 seconds on CPU; no GPU needed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output_dir="${1:-$root/tests/fixtures}"
python="$(bash "$root/scripts/python_venv.sh")"

cd "$root"
"$python" scripts/optim_fixtures.py --output-dir "$output_dir"
