//! The testing kinds, for exercising schedulers and clusters without any science. A worker
//! runs them only when started with `--testing`.

use std::time::{Duration, Instant};

use super::config::{FailStage, SleepStage, TestFailure};
use super::ctx::{StageCtx, StageError};

/// `sleep`: waits `ms` (stopping early when asked), then writes `files` small files.
pub fn sleep(ctx: &StageCtx, st: &SleepStage) -> Result<(), StageError> {
    let started = Instant::now();
    let total = Duration::from_millis(st.ms);
    while started.elapsed() < total {
        ctx.check_stop()?;
        let done = started.elapsed().as_secs_f64() / total.as_secs_f64().max(1e-9);
        ctx.reporter.progress(done.min(1.0), "sleeping", &[]);
        std::thread::sleep((total - started.elapsed().min(total)).min(Duration::from_millis(50)));
    }
    for i in 0..st.files {
        let path = ctx.out.join(format!("file-{i}.txt"));
        std::fs::write(&path, format!("{} {i}\n", ctx.stage_id))
            .map_err(|e| StageError::Infrastructure(format!("{}: {e}", path.display())))?;
    }
    ctx.log(format!("slept {} ms, wrote {} files", st.ms, st.files));
    Ok(())
}

/// `fail-n-times`: attempts `1..=n` fail as configured; later ones succeed.
pub fn fail_n_times(ctx: &StageCtx, st: &FailStage) -> Result<(), StageError> {
    if ctx.attempt <= st.n {
        let why = format!("failing on purpose (attempt {} of the first {})", ctx.attempt, st.n);
        return Err(match st.failure {
            TestFailure::StageError => StageError::Failed(why),
            TestFailure::Infrastructure => StageError::Infrastructure(why),
        });
    }
    std::fs::write(ctx.out.join("ok.txt"), format!("attempt {}\n", ctx.attempt))
        .map_err(|e| StageError::Infrastructure(format!("ok.txt: {e}")))?;
    ctx.log(format!("succeeded at attempt {}", ctx.attempt));
    Ok(())
}
