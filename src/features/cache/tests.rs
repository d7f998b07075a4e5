use super::*;

fn open(root: &Path) -> FeatureCache {
    FeatureCache::open(root, "m", r#"{"cut": "x"}"#).unwrap()
}

fn folder(root: &Path) -> PathBuf {
    std::fs::read_dir(root.join("features")).unwrap().next().unwrap().unwrap().path()
}

fn files(root: &Path) -> Vec<PathBuf> {
    shard_files(&folder(root)).unwrap()
}

fn row(c: &mut FeatureCache, k: &str) -> Option<Vec<f32>> {
    c.get(k).unwrap()
}

#[test]
fn damaged_shards_are_dropped_with_one_warning_and_never_crash() {
    let root = tempfile::tempdir().unwrap();
    let mut c = open(root.path());
    c.append(&["a".into(), "b".into()], &ndarray::array![[1.0, 2.0], [3.0, 4.0]]).unwrap();
    c.append(&["c".into()], &ndarray::array![[5.0, 6.0]]).unwrap();
    let mut c = open(root.path());
    assert_eq!((c.len(), row(&mut c, "c")), (3, Some(vec![5.0f32, 6.0])));
    assert!(c.take_warnings().is_empty());

    // Same-size garbage over the first shard's feature bytes; the second cut short.
    let files = files(root.path());
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(&[0xFF; 8]);
    std::fs::write(&files[0], bytes).unwrap();
    let bytes = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &bytes[..bytes.len() - 5]).unwrap();

    let mut c = open(root.path());
    assert!(c.is_empty(), "nothing from a damaged shard is used");
    let warnings = c.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("dropped 2 damaged shard(s)"), "{warnings:?}");
    assert!(warnings[0].contains("does not match its sha256"), "{warnings:?}");
    assert!(self::files(root.path()).is_empty(), "damaged shards are deleted");
    c.append(&["a".into()], &ndarray::array![[1.0, 2.0]]).unwrap();
    let mut c = open(root.path());
    assert_eq!((c.len(), c.take_warnings().len()), (1, 0));
}

#[test]
fn shard_names_are_unique_per_host_process_and_write() {
    let root = tempfile::tempdir().unwrap();
    let mut c = open(root.path());
    c.append(&["a".into()], &ndarray::array![[1.0]]).unwrap();
    c.append(&["b".into()], &ndarray::array![[2.0]]).unwrap();
    let names: Vec<String> =
        files(root.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(names.len(), 2);
    let pid = format!("-{}-", std::process::id());
    for n in &names {
        assert!(n.starts_with("shard-") && n.contains(&pid) && n.ends_with(".safetensors"), "{n}");
    }
    // Nothing but the two shards and the recipe: written aside, then renamed.
    let all = std::fs::read_dir(folder(root.path())).unwrap().count();
    assert_eq!(all, 3);
}

#[test]
fn compaction_never_deletes_a_shard_it_did_not_merge() {
    let root = tempfile::tempdir().unwrap();
    let mut a = open(root.path());
    a.append(&["a".into()], &ndarray::array![[1.0, 1.5]]).unwrap();
    a.append(&["b".into()], &ndarray::array![[2.0, 2.5]]).unwrap();
    // Another writer adds a shard after `a` listed the folder.
    let mut b = open(root.path());
    b.append(&["c".into()], &ndarray::array![[3.0, 3.5]]).unwrap();
    let theirs = files(root.path()).into_iter().find(|p| !a.shards.iter().any(|s| s.path == *p)).unwrap();
    assert_eq!(a.compact().unwrap(), 2, "a merges its own two shards");
    assert!(theirs.exists(), "the shard written after `a` looked is still there");
    assert_eq!(files(root.path()).len(), 2, "the merged shard and the other writer's");
    let mut fresh = open(root.path());
    assert_eq!(fresh.len(), 3);
    assert_eq!(row(&mut fresh, "b"), Some(vec![2.0, 2.5]));
    // `b` still finds its rows: its shard is untouched.
    assert_eq!(row(&mut b, "c"), Some(vec![3.0, 3.5]));
    // And now `a` (any process) merges everything it has listed: the two left.
    let mut c = open(root.path());
    assert_eq!(c.compact().unwrap(), 2);
    assert_eq!(files(root.path()).len(), 1);
    assert_eq!((c.len(), row(&mut c, "a"), row(&mut c, "c")), (3, Some(vec![1.0, 1.5]), Some(vec![3.0, 3.5])));
}

#[test]
fn a_reader_finds_rows_that_another_process_merged_away() {
    let root = tempfile::tempdir().unwrap();
    let mut writer = open(root.path());
    writer.append(&["a".into()], &ndarray::array![[1.0]]).unwrap();
    writer.append(&["b".into()], &ndarray::array![[2.0]]).unwrap();
    let mut reader = open(root.path());
    // Another process compacts: the shards the reader indexed are gone.
    open(root.path()).compact().unwrap();
    assert_eq!(row(&mut reader, "b"), Some(vec![2.0]));
    assert_eq!(row(&mut writer, "a"), Some(vec![1.0]));
    assert_eq!(row(&mut reader, "z"), None);
}

#[test]
fn racing_compactions_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut w = open(root.path());
    for i in 0..6 {
        w.append(&[format!("k{i}")], &ndarray::array![[i as f32, -(i as f32)]]).unwrap();
    }
    let mut first = open(root.path());
    let mut second = open(root.path());
    first.compact().unwrap();
    // The second one listed shards that are gone now: it stops, deleting nothing.
    assert_eq!(second.compact().unwrap(), 0);
    let mut c = open(root.path());
    assert_eq!(c.len(), 6);
    for i in 0..6 {
        assert_eq!(row(&mut c, &format!("k{i}")), Some(vec![i as f32, -(i as f32)]));
    }
}

#[test]
fn duplicates_across_shards_read_once_and_merge_into_one_row() {
    let root = tempfile::tempdir().unwrap();
    let mut a = open(root.path());
    let mut b = open(root.path());
    a.append(&["x".into(), "y".into()], &ndarray::array![[1.0], [2.0]]).unwrap();
    b.append(&["x".into()], &ndarray::array![[1.0]]).unwrap();
    let mut c = open(root.path());
    assert_eq!((c.len(), c.stats().rows), (2, 3));
    c.compact().unwrap();
    let s = open(root.path()).stats();
    assert_eq!((s.items, s.rows, s.shards), (2, 2, 1));
}

#[test]
fn retain_drops_unused_items_and_verify_names_damaged_shards() {
    let root = tempfile::tempdir().unwrap();
    let mut c = open(root.path());
    c.append(&["keep".into(), "drop".into()], &ndarray::array![[1.0], [2.0]]).unwrap();
    c.append(&["keep2/0".into()], &ndarray::array![[3.0]]).unwrap();
    let used = ["keep".to_string(), "keep2".to_string()];
    let removed = gc(root.path(), &used).unwrap();
    assert_eq!((removed.items, removed.shards), (1, 1));
    let mut c = open(root.path());
    assert_eq!((c.len(), row(&mut c, "drop"), row(&mut c, "keep2/0")), (2, None, Some(vec![3.0])));
    assert!(verify(&folder(root.path())).unwrap().is_empty());
    let f = &files(root.path())[0];
    let mut bytes = std::fs::read(f).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(f, bytes).unwrap();
    let bad = verify(&folder(root.path())).unwrap();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].1.contains("sha256"), "{bad:?}");
    assert!(f.exists(), "verify changes nothing");
}
