//! `report.html`: the run's report as one self-contained page (inline CSS, the run's pictures as
//! base64 `data:` URIs, no scripts, nothing fetched): the config, the data summary and skipped
//! files, the curves, the confusion matrix, per-class precision, recall and F1, `mistakes.png`
//! (when the run folder holds one) or the most confidently wrong examples, the verification and the
//! timings.

use std::fmt::Write as _;
use std::path::Path;

use super::report::{Mistake, Report};
use crate::{io, Result};

/// The file name in the run folder.
pub const REPORT_HTML: &str = "report.html";

/// Pictures of the run folder the page embeds, in this order, with their captions.
const PICTURES: [(&str, &str); 3] = [
    ("curves.png", "Learning curves"),
    ("confusion.png", "Confusion matrix"),
    ("mistakes.png", "Most confidently wrong validation images"),
];

/// Writes `dir/report.html` (atomically) for `report`, embedding the pictures found in `dir`.
pub fn write(dir: &Path, report: &Report) -> Result<()> {
    let mut pictures = Vec::new();
    for (file, caption) in PICTURES {
        let path = dir.join(file);
        if path.is_file() {
            pictures.push((file, caption, io::read(&path)?));
        }
    }
    let mistakes_md = dir.join("mistakes.md");
    let mistakes_md =
        if mistakes_md.is_file() { Some(String::from_utf8_lossy(&io::read(&mistakes_md)?).into_owned()) } else { None };
    let html = render(report, &pictures, mistakes_md.as_deref());
    io::write_atomic(&dir.join(REPORT_HTML), html.as_bytes())
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2733}
header{background:#1f4e79;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:26px}
header p{margin:6px 0 0;opacity:.85}
main{padding:8px 32px 40px;max-width:1180px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px 20px;margin:16px 0}
h2{font-size:19px;color:#1f4e79;border-bottom:2px solid #e3e8ee;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #d5dbe1;padding:4px 10px;text-align:left;font-size:14px}
th{background:#eef2f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#eef5fb;border-left:5px solid #2e86de;padding:8px 14px;min-width:140px}
.card b{display:block;font-size:22px}
.pass{color:#1e8449;font-weight:bold}.fail{color:#c0392b;font-weight:bold}
pre{background:#f7f9fb;border:1px solid #e3e8ee;padding:10px;overflow:auto;font-size:13px}
img{max-width:100%;border:1px solid #e3e8ee}
figcaption{font-size:13px;color:#5a6775}
";

fn num(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "—".into()
    }
}

/// A table: header cells, then rows of already-escaped cells (numbers right-aligned when `numeric`
/// says so for their column).
fn table(head: &[&str], rows: &[Vec<String>], numeric: &[bool]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr>");
    for row in rows {
        s.push_str("<tr>");
        for (k, cell) in row.iter().enumerate() {
            let class = if numeric.get(k).copied().unwrap_or(false) { " class=\"num\"" } else { "" };
            let _ = write!(s, "<td{class}>{cell}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn section(title: &str, body: &str) -> String {
    format!("<section><h2>{}</h2>{body}</section>\n", escape(title))
}

fn mistakes_table(wrong: &[Mistake]) -> String {
    let rows: Vec<Vec<String>> = wrong
        .iter()
        .map(|m| vec![escape(&m.id), escape(&m.label), escape(&m.predicted), num(m.probability as f64, 3)])
        .collect();
    table(&["example", "true", "predicted", "probability"], &rows, &[false, false, false, true])
}

/// The page for `report`, with `pictures` (file name, caption, PNG bytes) and a text run's
/// `mistakes.md`.
pub fn render(report: &Report, pictures: &[(&str, &str, Vec<u8>)], mistakes_md: Option<&str>) -> String {
    let cfg = &report.pipeline;
    let v = &report.validation;
    let m = &v.metrics;
    let mut body = String::new();

    let verified = if report.verification.passed {
        "<span class=\"pass\">passed</span>"
    } else {
        "<span class=\"fail\">FAILED</span>"
    };
    let cards = [
        ("accuracy", num(m.accuracy as f64, 4)),
        ("log loss", num(m.log_loss as f64, 4)),
        ("evaluated on", format!("{} ({} rows)", escape(&v.evaluated_on), v.rows)),
        ("best epoch", format!("{} of {}", report.best_epoch, report.history.len())),
        ("verification", verified.to_string()),
        ("total time", format!("{} s", num(report.timing.total_seconds, 1))),
    ];
    body.push_str("<section><div class=\"cards\">");
    for (name, value) in cards {
        let _ = write!(body, "<div class=\"card\">{}<b>{value}</b></div>", escape(name));
    }
    body.push_str("</div></section>\n");

    let figures: String = pictures
        .iter()
        .filter(|(file, ..)| *file != "mistakes.png")
        .map(|(file, caption, png)| {
            format!(
                "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{} ({})</figcaption></figure>",
                escape(caption),
                base64(png),
                escape(caption),
                escape(file)
            )
        })
        .collect();
    if !figures.is_empty() {
        body.push_str(&section("Curves and confusion matrix", &figures));
    }

    let per_class: Vec<Vec<String>> = m
        .per_class
        .iter()
        .map(|c| {
            vec![
                escape(&c.label),
                num(c.precision as f64, 4),
                num(c.recall as f64, 4),
                num(c.f1 as f64, 4),
                c.support.to_string(),
            ]
        })
        .collect();
    let mut metrics =
        table(&["class", "precision", "recall", "F1", "support"], &per_class, &[false, true, true, true, true]);
    let labels: Vec<&str> = m.per_class.iter().map(|c| c.label.as_str()).collect();
    if !m.confusion.is_empty() {
        let mut head = vec!["true \\ predicted"];
        head.extend(labels.iter().copied());
        let rows: Vec<Vec<String>> = m
            .confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut r = vec![escape(labels.get(i).copied().unwrap_or("?"))];
                r.extend(row.iter().map(usize::to_string));
                r
            })
            .collect();
        let mut numeric = vec![false];
        numeric.extend(std::iter::repeat_n(true, labels.len()));
        metrics.push_str("<p>Confusion matrix (rows: true class, columns: predicted):</p>");
        metrics.push_str(&table(&head, &rows, &numeric));
    }
    if !v.folds.is_empty() {
        let rows: Vec<Vec<String>> = v
            .folds
            .iter()
            .map(|f| {
                vec![
                    f.fold.to_string(),
                    f.rows.to_string(),
                    num(f.accuracy as f64, 4),
                    num(f.log_loss as f64, 4),
                    f.best_epoch.to_string(),
                    f.epochs.to_string(),
                ]
            })
            .collect();
        metrics.push_str("<p>Cross-validation folds:</p>");
        metrics.push_str(&table(&["fold", "rows", "accuracy", "log loss", "best epoch", "epochs"], &rows, &[true; 6]));
    }
    body.push_str(&section(&format!("Metrics ({}, {:?} validation)", v.evaluated_on, v.method), &metrics));

    let wrong = report
        .images
        .as_ref()
        .map(|i| &i.most_confidently_wrong)
        .or(report.text.as_ref().map(|t| &t.most_confidently_wrong));
    let mut mistakes = String::new();
    if let Some((file, caption, png)) = pictures.iter().find(|(file, ..)| *file == "mistakes.png") {
        let _ = write!(
            mistakes,
            "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{} ({})</figcaption></figure>",
            escape(caption),
            base64(png),
            escape(caption),
            escape(file)
        );
    }
    if let Some(md) = mistakes_md {
        let _ = write!(mistakes, "<pre>{}</pre>", escape(md));
    }
    if let Some(wrong) = wrong.filter(|w| !w.is_empty()) {
        mistakes.push_str(&mistakes_table(wrong));
    }
    if !mistakes.is_empty() {
        body.push_str(&section("Most confidently wrong", &mistakes));
    }

    let d = &report.data;
    let mut data = format!(
        "<p>{} rows from <code>{}</code>; inputs: {}.</p>",
        d.rows,
        escape(&d.path),
        escape(&d.features.join(", "))
    );
    let counts: Vec<Vec<String>> =
        d.labels.iter().zip(&d.class_counts).map(|(l, c)| vec![escape(l), c.to_string()]).collect();
    data.push_str(&table(&["class", "rows"], &counts, &[false, true]));
    if let Some(i) = &report.images {
        let _ = write!(
            data,
            "<p>Backbone <b>{}</b> (cut at <code>{}</code>, sha256 <code>{}</code>): {} images found, {} embedded \
             ({} now, the rest from the feature cache) in {} s.</p>",
            escape(&i.backbone.name),
            escape(i.backbone.cut.as_deref().unwrap_or("its output")),
            escape(&i.backbone.sha256.chars().take(16).collect::<String>()),
            i.found,
            i.embedded,
            i.embedded_now,
            num(i.embed_seconds, 1)
        );
    }
    if let Some(t) = &report.text {
        let encoder = t.encoder.as_ref().map_or("none (trained from scratch)".to_string(), |e| e.name.clone());
        let _ = write!(data, "<p>Vocabulary {} tokens; encoder {}.</p>", t.vocab_size, escape(&encoder));
    }
    let mut skipped: Vec<Vec<String>> = Vec::new();
    if let Some(i) = &report.images {
        skipped.extend(i.skipped.iter().map(|s| vec![escape(&s.path), escape(&s.reason)]));
    }
    let bad_rows = d.skipped_rows.iter().chain(report.text.iter().flat_map(|t| t.skipped_rows.iter()));
    skipped.extend(bad_rows.map(|b| vec![format!("{}:{}", escape(&d.path), b.line), escape(&b.reason)]));
    if skipped.is_empty() {
        data.push_str("<p>No files or rows were skipped.</p>");
    } else {
        let _ = write!(data, "<p>{} skipped:</p>", skipped.len());
        data.push_str(&table(&["file or row", "reason"], &skipped, &[false, false]));
    }
    body.push_str(&section("Data", &data));

    if let Some(ft) = &report.fine_tune {
        let rows: Vec<Vec<String>> = ft
            .phases
            .iter()
            .map(|p| {
                let last = p.history.last();
                vec![
                    escape(&p.name),
                    p.history.len().to_string(),
                    p.best_epoch.to_string(),
                    last.map_or("—".into(), |r| num(r.loss as f64, 4)),
                    last.and_then(|r| r.val_accuracy).map_or("—".into(), |a| num(a as f64, 4)),
                    num(p.seconds, 1),
                ]
            })
            .collect();
        let mut s = format!(
            "<p>Tail from <code>{}</code> to <code>{}</code>: {} nodes, {} trainable scalars.</p>",
            escape(&ft.unfrozen_from),
            escape(&ft.tail_end),
            ft.tail_nodes,
            ft.tail_parameters
        );
        s.push_str(&table(
            &["phase", "epochs", "best epoch", "last loss", "last val accuracy", "seconds"],
            &rows,
            &[false, true, true, true, true, true],
        ));
        body.push_str(&section("Fine-tuning", &s));
    }

    let ver = &report.verification;
    let rows: Vec<Vec<String>> = ver
        .engines
        .iter()
        .map(|e| {
            let ok = if e.passed() { "<span class=\"pass\">pass</span>" } else { "<span class=\"fail\">fail</span>" };
            vec![
                escape(&e.engine),
                e.rows.to_string(),
                format!("{:.2e}", e.max_abs_diff),
                format!("{:.2}%", e.argmax_agreement * 100.0),
                ok.to_string(),
            ]
        })
        .collect();
    let mut s = format!(
        "<p>The exported <code>model.onnx</code> against the {} model, tolerance {:.0e}: {verified}.</p>",
        escape(&ver.reference),
        ver.tolerance
    );
    s.push_str(&table(
        &["engine", "rows", "max |diff|", "argmax agreement", ""],
        &rows,
        &[false, true, true, true, false],
    ));
    for skip in &ver.skipped {
        let _ = write!(s, "<p>Not run: {}</p>", escape(skip));
    }
    body.push_str(&section("Verification", &s));

    let t = &report.timing;
    let mut times = vec![
        vec!["training loops".to_string(), num(t.train_seconds, 2)],
        vec!["whole command".to_string(), num(t.total_seconds, 2)],
    ];
    if t.earlier_train_seconds > 0.0 {
        times.push(vec!["training in the interrupted runs resumed".into(), num(t.earlier_train_seconds, 2)]);
    }
    if let Some(i) = &report.images {
        times.push(vec!["embedding images".into(), num(i.embed_seconds, 2)]);
    }
    if let Some(secs) = report.text.as_ref().and_then(|t| t.embed_seconds) {
        times.push(vec!["embedding texts".into(), num(secs, 2)]);
    }
    let mut s = table(&["stage", "seconds"], &times, &[false, true]);
    let epochs: Vec<Vec<String>> = report
        .history
        .iter()
        .map(|r| {
            vec![
                r.epoch.to_string(),
                num(r.loss as f64, 4),
                num(r.accuracy as f64, 4),
                r.val_loss.map_or("—".into(), |x| num(x as f64, 4)),
                r.val_accuracy.map_or("—".into(), |x| num(x as f64, 4)),
                format!("{:.2e}", r.lr),
                num(r.seconds, 2),
            ]
        })
        .collect();
    s.push_str("<p>Epochs of the exported model's training:</p>");
    s.push_str(&table(
        &["epoch", "loss", "accuracy", "val loss", "val accuracy", "lr", "seconds"],
        &epochs,
        &[true; 7],
    ));
    body.push_str(&section("Timings", &s));

    let toml = toml::to_string_pretty(cfg).unwrap_or_else(|e| format!("(cannot show the config: {e})"));
    let mut s =
        format!("<p>Seed {}; graft {}.</p><pre>{}</pre>", report.seed, escape(&report.graft_version), escape(&toml));
    let _ = write!(s, "<p>Files: {}</p>", escape(&report.outputs.join(", ")));
    body.push_str(&section("Config", &s));

    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{name} — graft run report</title><style>{STYLE}</style></head>\n<body><header><h1>{name}</h1>\
         <p>graft run report · {task:?} pipeline · accuracy {acc} on {on}</p></header><main>\n{body}</main></body></html>\n",
        name = escape(&cfg.name),
        task = cfg.task,
        acc = num(m.accuracy as f64, 4),
        on = escape(&v.evaluated_on),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        assert_eq!(base64(&[0xFF, 0xFE, 0x00]), "//4A");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }
}
