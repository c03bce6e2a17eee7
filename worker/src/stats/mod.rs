//! Statistics of the measurements: AUROC, effect sizes, histogram overlap, OLS, PCA, bootstrap
//! intervals and random-direction nulls. Every routine is tested against an independent
//! computation.

pub mod auroc;
pub mod basic;
pub mod bootstrap;
pub mod effect;
pub mod error;
pub mod null;
pub mod ols;
pub mod overlap;
pub mod pca;

pub use auroc::auroc;
pub use basic::{cosine, mean, quantile, sample_var};
pub use bootstrap::{Interval, bootstrap_ci};
pub use effect::cohens_d;
pub use error::StatsError;
pub use null::{NullSummary, null_cosine_sd, random_direction_null};
pub use ols::{Ols, ols};
pub use overlap::histogram_overlap;
pub use pca::{Pca, components_for_variance, pca, project_out};
