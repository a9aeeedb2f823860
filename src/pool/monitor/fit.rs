//! A least-squares line through (time, throughput) points, and the running sums that fit
//! a whole transfer without keeping every sample.

/// A least-squares line through (time, throughput) points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Change in throughput per second (bytes/s per s).
    pub slope: f64,
    pub mean: f64,
    /// Share of the variance the line explains (0 for a flat series).
    pub r2: f64,
    pub variance: f64,
    /// Seconds between the first and last point.
    pub span: f64,
}

impl Fit {
    pub fn of(points: &[(f64, f64)]) -> Option<Fit> {
        let mut sums = Sums::default();
        for &(x, y) in points {
            sums.add(x, y);
        }
        sums.fit()
    }

    /// The change the line predicts across the span, as a fraction of the mean.
    pub fn relative_change(&self) -> f64 {
        if self.mean > 0.0 {
            self.slope * self.span / self.mean
        } else {
            0.0
        }
    }

    /// Standard deviation over mean.
    pub fn variation(&self) -> f64 {
        if self.mean > 0.0 {
            self.variance.sqrt() / self.mean
        } else {
            0.0
        }
    }
}

/// Running sums for a least-squares fit, so the whole transfer can be fitted without
/// keeping every sample.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sums {
    pub(super) n: f64,
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) xx: f64,
    pub(super) xy: f64,
    pub(super) yy: f64,
    pub(super) min_x: f64,
    pub(super) max_x: f64,
}

impl Sums {
    pub(super) fn add(&mut self, x: f64, y: f64) {
        if self.n == 0.0 {
            self.min_x = x;
            self.max_x = x;
        }
        self.min_x = self.min_x.min(x);
        self.max_x = self.max_x.max(x);
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.xy += x * y;
        self.yy += y * y;
    }

    pub(super) fn fit(&self) -> Option<Fit> {
        let n = self.n;
        if n < 2.0 {
            return None;
        }
        let sxx = self.xx - self.x * self.x / n;
        let sxy = self.xy - self.x * self.y / n;
        let syy = (self.yy - self.y * self.y / n).max(0.0);
        if sxx <= f64::EPSILON {
            return None;
        }
        let slope = sxy / sxx;
        let mean = self.y / n;
        // Below rounding noise the series is flat: nothing for a line to explain.
        let flat = syy <= 1e-9 * (mean * mean * n).max(1.0);
        let r2 = if flat {
            0.0
        } else {
            (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
        };
        Some(Fit {
            slope: if flat { 0.0 } else { slope },
            mean,
            r2,
            variance: if flat { 0.0 } else { syy / n },
            span: self.max_x - self.min_x,
        })
    }
}
