//! `report.html` in every run folder: one self-contained page (pictures as data URIs, nothing
//! fetched) that renders in headless Chromium (skipped, with a message, where Chromium is missing).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Every `src=`/`href=` value and CSS `url(...)` of `html`.
fn references(html: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for key in ["src=\"", "href=\"", "url("] {
        for (at, _) in html.match_indices(key) {
            let rest = &html[at + key.len()..];
            let end = rest.find(['"', ')']).unwrap_or(rest.len());
            refs.push(rest[..end].chars().take(40).collect());
        }
    }
    refs
}

/// Checks that the page fetches nothing: no scripts, stylesheets or frames, and every reference
/// is a `data:` URI; returns how many pictures it embeds.
fn assert_self_contained(html: &str) -> usize {
    for tag in ["<script", "<link", "<iframe", "<object", "<embed", "@import"] {
        assert!(!html.contains(tag), "{tag} in report.html");
    }
    let refs = references(html);
    for r in &refs {
        assert!(r.starts_with("data:image/png;base64,"), "an external reference: {r}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "no URL at all in the page");
    refs.len()
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        let found = Command::new("which").arg(name).output().ok()?;
        found.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&found.stdout).trim()))
    })
}

/// Renders `page` in headless Chromium with the network cut off (every host resolves to nothing,
/// through a proxy that does not exist); returns the screenshot, or `None` without Chromium.
fn screenshot(page: &Path, out: &Path) -> Option<image::RgbImage> {
    let Some(chromium) = chromium() else {
        println!("skipping the Chromium rendering: no chromium here (scripts/setup-test.sh installs Debian's)");
        return None;
    };
    let shot = out.join("shot.png");
    let profile = out.join("profile");
    let result = Command::new("timeout")
        .arg("120")
        .arg(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1280,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(shot.is_file(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&result.stderr));
    Some(image::open(&shot).unwrap().to_rgb8())
}

/// Not blank: many distinct colours (text, the header, the embedded plots) and plenty of ink.
fn assert_not_blank(img: &image::RgbImage) {
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let background = img.get_pixel(img.width() - 1, img.height() - 1).0;
    let inked = img.pixels().filter(|p| p.0 != background).count() as f64 / (img.width() * img.height()) as f64;
    assert!(colours.len() > 200, "only {} colours in the screenshot", colours.len());
    assert!(inked > 0.10, "only {:.1}% of the screenshot differs from the background", inked * 100.0);
}

#[test]
fn report_html_of_a_tabular_run_renders_in_chromium_and_fetches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    ok(&["fit", "pipelines/iris.toml", "--out", s(&run), "-q", "--set", "train.epochs=5"]);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_eq!(assert_self_contained(&html), 2, "curves.png and confusion.png");
    for part in ["Config", "Data", "Metrics", "Verification", "Timings", "precision", "recall", "F1", "species"] {
        assert!(html.contains(part), "`{part}` missing from report.html");
    }
    let r = report(&run);
    assert!(r["outputs"].as_array().unwrap().iter().any(|o| o == "report.html"));
    if let Some(img) = screenshot(&run.join("report.html"), tmp.path()) {
        assert_not_blank(&img);
    }
}

#[test]
fn report_html_of_an_image_run_shows_its_pictures_and_skipped_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache, run) = (tmp.path().join("data"), tmp.path().join("cache"), tmp.path().join("run"));
    let broken = crate::images::subset(&data, 8);
    let args = ["--set", "backbone.device=\"cpu\"", "--set", "train.epochs=3"];
    fit_pipeline("pipelines/cats-vs-dogs.toml", &run, &data, &cache, &args);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let pngs = ["curves.png", "confusion.png", "mistakes.png"].iter().filter(|f| run.join(f).is_file()).count();
    assert_eq!(assert_self_contained(&html), pngs, "every picture of the run folder is embedded");
    assert_eq!(html.contains("mistakes.png"), run.join("mistakes.png").is_file());
    for b in &broken {
        let name = b.file_name().unwrap().to_str().unwrap();
        assert!(html.contains(name), "skipped file {name} listed");
    }
    assert!(html.contains("EfficientNet") || html.contains("efficientnet"), "the backbone is named");
    if let Some(img) = screenshot(&run.join("report.html"), tmp.path()) {
        assert_not_blank(&img);
    }
}
