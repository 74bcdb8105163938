//! Every hook the trainer calls ([`Hook`], generated from the hook table of
//! `burn-lightning-macros`), with what its context may log and who implements it; and the small
//! enums that describe modules and callbacks to the trainer.

burn_lightning_macros::__runtime_hook_list!();

/// Automatic or manual optimization.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Optimization {
    /// `training_step` returns the loss; the trainer runs backward and the optimizer.
    Automatic,
    /// `training_step` calls `cx.manual_backward` and `cx.optimizer_step` itself.
    Manual,
}

/// What a hook's context allows it to log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogScope {
    /// No logging (a compile error: the context has no `log`).
    None,
    /// Reduced once per epoch.
    Epoch,
    /// Per step, per epoch, or both (the defaults depend on the hook, as in Lightning).
    StepAndEpoch,
}

/// Who implements a hook.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HookOwner {
    Module,
    Callbacks,
    ModuleAndCallbacks,
}

/// Where a callback runs among the others.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallbackRole {
    /// In list order, before the module.
    Plain,
    /// Watches metrics (early stopping): runs after the module at `on_train_epoch_end`.
    Monitor,
    /// Writes checkpoints: placed last, and runs after the module at `on_train_epoch_end`.
    Checkpoint,
}

impl CallbackRole {
    /// Whether the callback runs after the module at `on_train_epoch_end` (Lightning's
    /// "monitoring callbacks": they read what the module logged there).
    pub fn runs_after_module(self) -> bool {
        matches!(self, CallbackRole::Monitor | CallbackRole::Checkpoint)
    }
}

/// A set of hooks, as a bit mask (one bit per [`Hook`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HookSet(u128);

const _: () = assert!(Hook::ALL.len() <= 128, "HookSet holds at most 128 hooks");

impl HookSet {
    /// The hooks in `hooks`.
    pub const fn of(hooks: &[Hook]) -> Self {
        let mut bits = 0u128;
        let mut i = 0;
        while i < hooks.len() {
            bits |= 1 << hooks[i] as u8;
            i += 1;
        }
        Self(bits)
    }

    pub const fn contains(self, hook: Hook) -> bool {
        self.0 & (1 << hook as u8) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Hook> {
        Hook::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}
