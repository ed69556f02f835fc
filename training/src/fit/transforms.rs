//! Per-feature transforms of session features (clip, log1p, standardise),
//! learned on training rows so a served value is scaled exactly as in
//! training; shared by the intent fit, the uplift fit and the benchmark.

use nudge::domain::features::{Scale, FEATURES};
use nudge::domain::model::Transform;

/// Applies transforms exactly like `nudge::domain::model` does when scoring (it is
/// the same function).
pub fn apply(transforms: &[Transform], x: f64) -> f64 {
    nudge::domain::model::apply_transforms(transforms, x)
}

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = (q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[pos]
}

/// Learns the transforms of feature `j` from its raw training values;
/// `None` when the feature has (near) zero variance.
pub fn learn_transforms(j: usize, raw: &[f64], clip_quantile: f64) -> Option<Vec<Transform>> {
    if raw.is_empty() {
        return None;
    }
    let mut ts = Vec::new();
    match FEATURES[j].scale {
        Scale::Flag => {}
        scale => {
            let mut sorted = raw.to_vec();
            sorted.sort_by(f64::total_cmp);
            let lo = sorted[0];
            let mut hi = quantile_sorted(&sorted, clip_quantile);
            if hi <= lo {
                hi = sorted[sorted.len() - 1];
            }
            ts.push(Transform::Clip { lo, hi });
            if scale == Scale::Log {
                ts.push(Transform::Log1p);
            }
        }
    }
    let n = raw.len() as f64;
    let vals: Vec<f64> = raw.iter().map(|&x| apply(&ts, x)).collect();
    let mean = vals.iter().sum::<f64>() / n;
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let std = var.sqrt();
    if std.is_nan() || std <= 1e-9 {
        return None;
    }
    ts.push(Transform::Standardise { mean, std });
    Some(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_follow_the_scale_hints() {
        let j = nudge::domain::features::index_of("page_views").unwrap();
        let ts = learn_transforms(j, &[0.0, 1.0, 3.0, 100.0], 1.0).unwrap();
        assert!(matches!(ts[0], Transform::Clip { lo, hi } if lo == 0.0 && hi == 100.0));
        assert_eq!(ts[1], Transform::Log1p);
        assert!(matches!(ts[2], Transform::Standardise { .. }));
        let flag = nudge::domain::features::index_of("device_mobile").unwrap();
        assert_eq!(learn_transforms(flag, &[1.0, 1.0], 0.999), None);
        assert_eq!(learn_transforms(flag, &[0.0, 1.0], 0.999).unwrap().len(), 1);
    }
}
