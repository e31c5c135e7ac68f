//! Waveform augmentation for keyword training: what a microphone and a room do to speech that
//! a speech synthesizer does not. Random equalization (RBJ biquads), tempo/pitch perturbation,
//! sparse room reverberation and short background events. Every choice draws from the caller's
//! seeded [`Rng`], so a data command is reproducible.

use crate::rng::Rng;

pub const SAMPLE_RATE_HZ: f32 = 16000.0;

/// One second-order IIR section (direct form I), coefficients normalized by `a0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
}

impl Biquad {
    fn normalized(b: [f32; 3], a: [f32; 3]) -> Self {
        let a0 = a[0];
        Biquad {
            b: [b[0] / a0, b[1] / a0, b[2] / a0],
            a: [a[1] / a0, a[2] / a0],
        }
    }

    /// `(cos w0, alpha)` of the audio EQ cookbook for a corner/centre frequency and Q.
    fn angle(hz: f32, q: f32) -> (f32, f32) {
        let w0 = 2.0 * std::f32::consts::PI * (hz / SAMPLE_RATE_HZ).clamp(1e-4, 0.49);
        (w0.cos(), w0.sin() / (2.0 * q))
    }

    pub fn low_pass(hz: f32, q: f32) -> Self {
        let (cos, alpha) = Self::angle(hz, q);
        Self::normalized(
            [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        )
    }

    pub fn high_pass(hz: f32, q: f32) -> Self {
        let (cos, alpha) = Self::angle(hz, q);
        Self::normalized(
            [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        )
    }

    /// Peaking EQ: `gain_db` at `hz`, unity far from it.
    pub fn peaking(hz: f32, q: f32, gain_db: f32) -> Self {
        let (cos, alpha) = Self::angle(hz, q);
        let a = 10f32.powf(gain_db / 40.0);
        Self::normalized(
            [1.0 + alpha * a, -2.0 * cos, 1.0 - alpha * a],
            [1.0 + alpha / a, -2.0 * cos, 1.0 - alpha / a],
        )
    }

    pub fn apply(&self, samples: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0f32, 0f32, 0f32, 0f32);
        for s in samples.iter_mut() {
            let x = *s;
            let y =
                self.b[0] * x + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            (x2, x1, y2, y1) = (x1, x, y1, y);
            *s = y;
        }
    }
}

/// A random microphone/channel colouring: optional high-pass (small or distant mics),
/// optional low-pass (telephone-like band limits), and up to two resonances or dips.
pub fn random_eq(samples: &mut [f32], rng: &mut Rng) {
    if rng.unit() < 0.5 {
        Biquad::high_pass(log_uniform(rng, 60.0, 600.0), 0.707).apply(samples);
    }
    if rng.unit() < 0.4 {
        Biquad::low_pass(log_uniform(rng, 1800.0, 7000.0), 0.707).apply(samples);
    }
    for _ in 0..rng.below(3) {
        let centre = log_uniform(rng, 150.0, 4000.0);
        Biquad::peaking(centre, rng.uniform(0.5, 2.5), rng.uniform(-12.0, 12.0)).apply(samples);
    }
}

fn log_uniform(rng: &mut Rng, low: f32, high: f32) -> f32 {
    (rng.uniform(low.ln(), high.ln())).exp()
}

/// Plays `samples` `factor` times faster (linear interpolation): tempo and pitch together,
/// like a speaker who talks faster and higher.
pub fn change_speed(samples: &[f32], factor: f32) -> Vec<f32> {
    if samples.is_empty() || factor <= 0.0 {
        return samples.to_vec();
    }
    let out_len = ((samples.len() as f32) / factor).floor() as usize;
    let last = samples.len() - 1;
    (0..out_len)
        .map(|i| {
            let position = i as f32 * factor;
            let index = (position as usize).min(last);
            let next = (index + 1).min(last);
            let fraction = position - index as f32;
            samples[index] * (1.0 - fraction) + samples[next] * fraction
        })
        .collect()
}

/// Room reverberation from a sparse random impulse response: the direct sound plus `taps`
/// reflections whose level decays 60 dB over `rt60_s`. The output keeps the decaying tail.
pub fn reverb(samples: &[f32], rng: &mut Rng, rt60_s: f32, wet: f32, taps: usize) -> Vec<f32> {
    let length = ((rt60_s * SAMPLE_RATE_HZ) as usize).max(2);
    let mut response: Vec<(usize, f32)> = vec![(0, 1.0)];
    for _ in 0..taps {
        let delay = 1 + rng.below(length - 1);
        let decay = (-6.9 * delay as f32 / length as f32).exp();
        let sign = if rng.unit() < 0.5 { -1.0 } else { 1.0 };
        response.push((delay, sign * wet * decay * rng.uniform(0.2, 1.0)));
    }
    let mut out = vec![0f32; samples.len() + length];
    for (delay, gain) in response {
        for (slot, s) in out.iter_mut().skip(delay).zip(samples) {
            *slot += gain * s;
        }
    }
    // Trim the tail where it has decayed below a thousandth of the peak.
    let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
    let keep = out
        .iter()
        .rposition(|s| s.abs() > peak * 1e-3)
        .map_or(0, |i| i + 1);
    out.truncate(keep.max(samples.len()));
    out
}

pub fn rms(samples: &[f32]) -> f32 {
    let energy: f32 = samples.iter().map(|s| s * s).sum();
    (energy / samples.len().max(1) as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / SAMPLE_RATE_HZ).sin())
            .collect()
    }

    fn steady_rms(samples: &[f32]) -> f32 {
        rms(&samples[samples.len() / 2..])
    }

    #[test]
    fn low_pass_keeps_low_tones_and_removes_high_ones() {
        let filter = Biquad::low_pass(1000.0, 0.707);
        let mut low = tone(100.0, 8000);
        let mut high = tone(6000.0, 8000);
        filter.apply(&mut low);
        filter.apply(&mut high);
        assert!(
            (steady_rms(&low) - 0.707).abs() < 0.02,
            "{}",
            steady_rms(&low)
        );
        assert!(steady_rms(&high) < 0.03, "{}", steady_rms(&high));
    }

    #[test]
    fn high_pass_and_peaking_gains() {
        let mut low = tone(50.0, 8000);
        Biquad::high_pass(1000.0, 0.707).apply(&mut low);
        assert!(steady_rms(&low) < 0.01);
        let mut centre = tone(1000.0, 8000);
        Biquad::peaking(1000.0, 1.0, 6.0).apply(&mut centre);
        let gain_db = 20.0 * (steady_rms(&centre) / 0.7071).log10();
        assert!((gain_db - 6.0).abs() < 0.2, "{gain_db}");
    }

    #[test]
    fn speed_change_scales_length_and_frequency() {
        let faster = change_speed(&tone(500.0, 16000), 1.25);
        assert_eq!(faster.len(), 12800);
        // A 625 Hz tone crosses zero 1250 times a second.
        let crossings = faster
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((crossings as i32 - 500).abs() <= 2, "{crossings}");
    }

    #[test]
    fn reverb_keeps_the_direct_sound_and_adds_a_tail() {
        let mut rng = Rng::new(1);
        let mut click = vec![0f32; 100];
        click[0] = 1.0;
        let wet = reverb(&click, &mut rng, 0.2, 0.5, 50);
        assert_eq!(wet[0], 1.0);
        assert!(wet.len() > click.len());
        assert!(wet[100..].iter().any(|s| s.abs() > 0.01));
    }
}
