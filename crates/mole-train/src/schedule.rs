//! The learning-rate schedule of MolE's training: linear warm-up from `lr / warmup` to `lr`
//! over the first `warmup` steps, then constant — Burn's `LinearLrScheduler` (which stays at
//! its final rate once there), or `ConstantLr` when there is no warm-up to speak of.

use burn::optim::lr_scheduler::constant::ConstantLr;
use burn::optim::lr_scheduler::linear::{LinearLrScheduler, LinearLrSchedulerConfig};
use burn::optim::lr_scheduler::LrScheduler;

use crate::TrainError;

/// Warm-up then constant, positioned at a step of the run (a resumed run starts mid-schedule).
#[derive(Debug, Clone)]
pub enum WarmupSchedule {
    /// The warm-up as a fraction of `lr` (Burn's schedulers take rates within (0, 1], and a
    /// run may ask for any positive `lr`), rising from `1 / warmup` to 1.
    Warmup {
        lr: f64,
        fraction: LinearLrScheduler,
    },
    Constant(ConstantLr),
}

impl WarmupSchedule {
    /// The schedule for `lr` with `warmup_steps` of warm-up, whose next rate is that of step
    /// `start_step` (0-based): step `s` trains at `lr · min(s + 1, warmup) / warmup`.
    pub fn new(lr: f64, warmup_steps: usize, start_step: usize) -> Result<Self, TrainError> {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(TrainError::Invalid(format!(
                "train.lr must be a positive number, not {lr}"
            )));
        }
        let mut schedule = if warmup_steps > 1 {
            let fraction =
                LinearLrSchedulerConfig::new(1.0 / warmup_steps as f64, 1.0, warmup_steps - 1)
                    .init()
                    .map_err(|why| TrainError::Invalid(format!("warm-up schedule: {why}")))?;
            Self::Warmup { lr, fraction }
        } else {
            Self::Constant(ConstantLr::new(lr))
        };
        // the linear scheduler only counts down to its final rate: past the warm-up every
        // step is the same
        for _ in 0..start_step.min(warmup_steps) {
            schedule.next_lr();
        }
        Ok(schedule)
    }

    /// The learning rate of the next step.
    pub fn next_lr(&mut self) -> f64 {
        match self {
            Self::Warmup { lr, fraction } => *lr * fraction.step(),
            Self::Constant(s) => s.step(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_stays_constant() {
        let mut schedule = WarmupSchedule::new(1e-3, 4, 0).unwrap();
        let rates: Vec<f64> = (0..7).map(|_| schedule.next_lr()).collect();
        let expected = [0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3, 1e-3, 1e-3];
        for (got, want) in rates.iter().zip(expected) {
            assert!((got - want).abs() <= 1e-15, "{rates:?}");
        }
        // resumed at step 2 it continues where the run was
        let mut resumed = WarmupSchedule::new(1e-3, 4, 2).unwrap();
        assert!((resumed.next_lr() - 0.75e-3).abs() <= 1e-15);
        let mut late = WarmupSchedule::new(1e-3, 4, 1_000_000).unwrap();
        assert_eq!(late.next_lr(), 1e-3);
        let mut constant = WarmupSchedule::new(5e-4, 1, 0).unwrap();
        assert_eq!(constant.next_lr(), 5e-4);
        // any positive rate, warming up or not
        let mut large = WarmupSchedule::new(2.0, 2, 0).unwrap();
        assert!((large.next_lr() - 1.0).abs() <= 1e-12);
        assert!(WarmupSchedule::new(0.0, 2, 0).is_err());
    }
}
