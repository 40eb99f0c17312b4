//! Small raster drawing for the pictures geosr writes (evaluation previews, training curves):
//! an RGB canvas with lines, rectangles and 8×8 bitmap text, saved as PNG by a few lines of its
//! own (deflate from `flate2`), so no image library, font file or GDAL is needed: the trainer
//! draws its curves without linking GDAL.
//!
//! ```
//! use geosr::plot::{Canvas, LineChart, Series, BLACK};
//! let mut c = Canvas::new(320, 200, [255, 255, 255]);
//! c.text(4, 4, "loss", BLACK, 1);
//! LineChart { title: "demo".into(), x_label: "step".into(),
//!             series: vec![Series { name: "a".into(), colour: [200, 0, 0],
//!                                   points: vec![(0.0, 1.0), (10.0, 0.5)] }] }
//!     .draw(&mut c, 0, 0, 320, 200);
//! let path = std::env::temp_dir().join(format!("geosr-plot-doc-{}.png", std::process::id()));
//! c.write_png(&path).unwrap();
//! assert!(std::fs::metadata(&path).unwrap().len() > 100);
//! # std::fs::remove_file(&path).unwrap();
//! ```
use crate::error::{Error, Result};
use std::path::Path;

pub type Rgb = [u8; 3];
pub const BLACK: Rgb = [0, 0, 0];
pub const GREY: Rgb = [150, 150, 150];
pub const LIGHT_GREY: Rgb = [225, 225, 225];
pub const WHITE: Rgb = [255, 255, 255];

/// An RGB image in memory, row-major, pixel-interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Canvas {
            width,
            height,
            rgb: background.repeat(width * height),
        }
    }

    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let at = (y as usize * self.width + x as usize) * 3;
            self.rgb[at..at + 3].copy_from_slice(&c);
        }
    }

    pub fn get(&self, x: usize, y: usize) -> Rgb {
        let at = (y * self.width + x) * 3;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }

    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// A one-pixel line (Bresenham).
    pub fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// ASCII text with the 8×8 font, each font pixel drawn as `scale`×`scale`.
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb, scale: i64) {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() {
                ch as usize
            } else {
                b'?' as usize
            }];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let px = x + (i as i64 * 8 + col) * scale;
                        self.fill_rect(px, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Width in pixels of `s` drawn at `scale`.
    pub fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 8 * scale
    }

    /// Copies an RGB image (`w`×`h`, interleaved) with its top-left corner at `x, y`.
    pub fn blit(&mut self, x: i64, y: i64, w: usize, h: usize, rgb: &[u8]) {
        for yy in 0..h {
            for xx in 0..w {
                let at = (yy * w + xx) * 3;
                self.set(
                    x + xx as i64,
                    y + yy as i64,
                    [rgb[at], rgb[at + 1], rgb[at + 2]],
                );
            }
        }
    }

    /// The canvas as PNG bytes (8-bit RGB, every row unfiltered, deflate-compressed).
    pub fn to_png(&self) -> Vec<u8> {
        use std::io::Write;
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.sum().to_be_bytes());
        }
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, no filter set, no interlace
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        for row in self.rgb.chunks_exact(self.width * 3) {
            // Writing to memory cannot fail.
            let _ = z.write_all(&[0]).and_then(|_| z.write_all(row));
        }
        let idat = z.finish().unwrap_or_default();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &idat);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    /// Writes the canvas as a PNG, atomically (see [`crate::atomic`]).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, &self.to_png())
    }
}

/// One polyline of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: Rgb,
    pub points: Vec<(f64, f64)>,
}

/// A line chart with axes, ticks and a legend.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub series: Vec<Series>,
}

/// About `n` round tick values covering `lo..=hi`.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    // the round step nearest to the raw one (on a log scale)
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .min_by(|a, b| (a / raw).ln().abs().total_cmp(&(b / raw).ln().abs()))
        .unwrap_or(mag);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect()
}

fn tick_label(v: f64, step: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.1e}")
    } else if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize;
        format!("{v:.decimals$}")
    }
}

impl LineChart {
    /// Draws the chart into the rectangle `x, y, w, h` of `canvas`.
    pub fn draw(&self, canvas: &mut Canvas, x: i64, y: i64, w: i64, h: i64) {
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let finite: Vec<&(f64, f64)> = pts
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .collect();
        canvas.text(x + 8, y + 4, &self.title, BLACK, 1);
        let (px0, py0, px1, py1) = (x + 64, y + 20, x + w - 12, y + h - 36);
        canvas.line(px0, py1, px1, py1, BLACK);
        canvas.line(px0, py0, px0, py1, BLACK);
        canvas.text(
            (px0 + px1) / 2 - Canvas::text_width(&self.x_label, 1) / 2,
            y + h - 12,
            &self.x_label,
            BLACK,
            1,
        );
        if finite.is_empty() {
            canvas.text(px0 + 8, py0 + 8, "no data", GREY, 1);
            return;
        }
        let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (a, b) in &finite {
            xmin = xmin.min(*a);
            xmax = xmax.max(*a);
            ymin = ymin.min(*b);
            ymax = ymax.max(*b);
        }
        if xmax <= xmin {
            xmax = xmin + 1.0;
        }
        let pad = ((ymax - ymin) * 0.05).max(ymax.abs() * 1e-6).max(1e-12);
        let (ymin, ymax) = (ymin - pad, ymax + pad);
        let sx = |v: f64| px0 + ((v - xmin) / (xmax - xmin) * (px1 - px0) as f64).round() as i64;
        let sy = |v: f64| py1 - ((v - ymin) / (ymax - ymin) * (py1 - py0) as f64).round() as i64;
        let yt = ticks(ymin, ymax, 5);
        let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
        for v in &yt {
            let yy = sy(*v);
            canvas.line(px0 + 1, yy, px1, yy, LIGHT_GREY);
            canvas.line(px0 - 4, yy, px0, yy, BLACK);
            let label = tick_label(*v, ystep);
            canvas.text(
                px0 - 6 - Canvas::text_width(&label, 1),
                yy - 4,
                &label,
                BLACK,
                1,
            );
        }
        let xt = ticks(xmin, xmax, 5);
        let xstep = if xt.len() > 1 { xt[1] - xt[0] } else { 1.0 };
        for v in &xt {
            let xx = sx(*v);
            canvas.line(xx, py1, xx, py1 + 4, BLACK);
            let label = tick_label(*v, xstep);
            canvas.text(
                xx - Canvas::text_width(&label, 1) / 2,
                py1 + 8,
                &label,
                BLACK,
                1,
            );
        }
        for s in &self.series {
            let mut prev: Option<(i64, i64)> = None;
            for (a, b) in &s.points {
                if !a.is_finite() || !b.is_finite() {
                    prev = None;
                    continue;
                }
                let p = (sx(*a), sy(*b));
                match prev {
                    Some(q) => canvas.line(q.0, q.1, p.0, p.1, s.colour),
                    None => canvas.fill_rect(p.0 - 1, p.1 - 1, 3, 3, s.colour),
                }
                prev = Some(p);
            }
        }
        // Legend on the title line, right-aligned, so it never covers the data.
        let mut lx = x + w - 12;
        for s in self.series.iter().rev().filter(|s| !s.name.is_empty()) {
            lx -= Canvas::text_width(&s.name, 1) + 18;
            canvas.fill_rect(lx, y + 7, 14, 2, s.colour);
            canvas.text(lx + 18, y + 4, &s.name, BLACK, 1);
            lx -= 12;
        }
    }
}

/// Draws the training curves of a run's `metrics.csv` (training loss; validation PSNR of the
/// model and of bicubic) into `out` as a PNG.
pub fn training_curves(metrics_csv: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics_csv).map_err(|e| Error::io(metrics_csv, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| Error::checkpoint(metrics_csv, "is empty"))?
        .split(',')
        .collect();
    let col = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            Error::Contract(format!(
                "{}: no `{name}` column in the header",
                metrics_csv.display()
            ))
        })
    };
    let (step, loss, vp, bp) = (
        col("step")?,
        col("train_loss")?,
        col("val_psnr")?,
        col("bicubic_psnr")?,
    );
    let mut series = [Vec::new(), Vec::new(), Vec::new()];
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        let Some(s) = get(step) else { continue };
        for (k, i) in [loss, vp, bp].into_iter().enumerate() {
            if let Some(v) = get(i) {
                series[k].push((s, v));
            }
        }
    }
    let [loss_pts, val_pts, bic_pts] = series;
    let mut canvas = Canvas::new(960, 360, WHITE);
    LineChart {
        title: "training loss".into(),
        x_label: "step".into(),
        series: vec![Series {
            name: "train loss".into(),
            colour: [40, 90, 200],
            points: loss_pts,
        }],
    }
    .draw(&mut canvas, 0, 0, 480, 360);
    LineChart {
        title: "validation PSNR (dB)".into(),
        x_label: "step".into(),
        series: vec![
            Series {
                name: "U-Net".into(),
                colour: [200, 40, 40],
                points: val_pts,
            },
            Series {
                name: "bicubic".into(),
                colour: [90, 90, 90],
                points: bic_pts,
            },
        ],
    }
    .draw(&mut canvas, 480, 0, 480, 360);
    canvas.write_png(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(27.3, 29.9, 5);
        assert!(t.iter().all(|v| (27.3..=29.9).contains(v)), "{t:?}");
        assert!(t.len() >= 3);
    }

    #[test]
    fn text_and_lines_land_where_asked() {
        let mut c = Canvas::new(40, 20, WHITE);
        c.line(0, 0, 39, 19, BLACK);
        assert_eq!(c.get(0, 0), BLACK);
        assert_eq!(c.get(39, 19), BLACK);
        c.text(0, 10, "I", [255, 0, 0], 1);
        let red = (0..8)
            .flat_map(|x| (10..18).map(move |y| (x, y)))
            .filter(|&(x, y)| c.get(x, y) == [255, 0, 0])
            .count();
        assert!(red > 8, "{red}");
    }

    #[test]
    fn png_holds_the_pixels() {
        use std::io::Read;
        let mut c = Canvas::new(16, 8, WHITE);
        c.set(3, 2, [10, 20, 30]);
        let png = c.to_png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[41..41 + idat_len])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 8 * (1 + 16 * 3));
        let row2 = &raw[2 * 49..3 * 49];
        assert_eq!(
            (row2[0], &row2[1 + 3 * 3..1 + 3 * 3 + 3]),
            (0, &[10u8, 20, 30][..])
        );
    }
}
