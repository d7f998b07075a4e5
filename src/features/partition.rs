//! Sharded extraction: worker INDEX of COUNT embeds the items whose content key falls in its part,
//! a deterministic function of the key alone, so a retried worker finds its finished items in the
//! shared cache and embeds only the rest, whatever order the files are listed in.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::{io, Error, Result};

/// Worker `index` of `count` (`0 <= index < count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This worker's part, from 0.
    pub index: u64,
    /// Parts in all.
    pub count: u64,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// `INDEX/COUNT`, or `auto`: read from the environment ([`Shard::from_env`]).
    pub fn parse(spec: &str) -> Result<Shard> {
        if spec.trim() == "auto" {
            return Shard::from_env(|k| std::env::var(k).ok());
        }
        let bad = || Error::Invalid(format!("--shard `{spec}`: expected INDEX/COUNT (e.g. 0/4) or `auto`"));
        let (i, n) = spec.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        Shard::new(index, count, &format!("--shard {spec}"))
    }

    fn new(index: u64, count: u64, origin: &str) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::Invalid(format!(
                "{origin}: shard {index} of {count} does not exist (0 <= INDEX < COUNT)"
            )));
        }
        Ok(Shard { index, count })
    }

    /// The worker's part from the job engine's variables, read through `var`:
    /// - Kubernetes Indexed Job: `JOB_COMPLETION_INDEX`, with the count in `GRAFT_SHARDS` (set it to
    ///   the Job's `completions`);
    /// - Slurm job array: `SLURM_ARRAY_TASK_ID` of `GRAFT_SHARDS` when that is set (so one task
    ///   resubmitted alone, `sbatch --array=5`, keeps its part), else `SLURM_ARRAY_TASK_ID` less
    ///   `SLURM_ARRAY_TASK_MIN` (so `--array=1-8` works) of `SLURM_ARRAY_TASK_COUNT`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let num = |k: &str| -> Result<Option<u64>> {
            match var(k).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::Invalid(format!("--shard auto: {k}={v:?} is not a whole number"))),
            }
        };
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = num("GRAFT_SHARDS")?.ok_or_else(|| {
                Error::Invalid(
                    "--shard auto: JOB_COMPLETION_INDEX is set but GRAFT_SHARDS is not; set it to the Job's completions"
                        .into(),
                )
            })?;
            return Shard::new(index, count, "--shard auto (JOB_COMPLETION_INDEX, GRAFT_SHARDS)");
        }
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            if let Some(count) = num("GRAFT_SHARDS")? {
                return Shard::new(id, count, "--shard auto (SLURM_ARRAY_TASK_ID, GRAFT_SHARDS)");
            }
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                Error::Invalid("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
            })?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let origin = "--shard auto (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT)";
            return Shard::new(id.checked_sub(min).unwrap_or(u64::MAX), count, origin);
        }
        Err(Error::Invalid(
            "--shard auto: neither JOB_COMPLETION_INDEX with GRAFT_SHARDS (Kubernetes Indexed Job) nor \
             SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (Slurm job array) is set; use --shard INDEX/COUNT"
                .into(),
        ))
    }

    /// Whether the item with content key `key` is this worker's: the first 8 bytes of the key (a
    /// hex sha256) as a big-endian number, modulo `count`, equal `index`. Keys that are not hex
    /// digests (unreadable files) are hashed first.
    pub fn owns(&self, key: &str) -> bool {
        let head = key.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok());
        let n = head.unwrap_or_else(|| {
            let d = Sha256::digest(key.as_bytes());
            u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
        });
        n % self.count == self.index
    }

    /// The indices of the files this worker embeds (each file is read and hashed).
    pub fn select_files(&self, paths: &[PathBuf]) -> Vec<usize> {
        let keys = crate::features::file_keys(paths);
        (0..paths.len()).filter(|&i| self.owns(&keys[i])).collect()
    }

    /// The indices of the texts this worker embeds.
    pub fn select_texts(&self, texts: &[String]) -> Vec<usize> {
        (0..texts.len()).filter(|&i| self.owns(&io::sha256_hex(texts[i].as_bytes()))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        assert_eq!(Shard::parse("2/5").unwrap().to_string(), "2/5");
        for bad in ["5/5", "1/0", "x/3", "3", "-1/3"] {
            assert!(Shard::parse(bad).unwrap_err().to_string().contains("--shard"), "{bad}");
        }
    }

    #[test]
    fn auto_reads_kubernetes_then_slurm_and_names_what_is_missing() {
        let k8s = [("JOB_COMPLETION_INDEX", "2"), ("GRAFT_SHARDS", "3")];
        assert_eq!(Shard::from_env(env(&k8s)).unwrap(), Shard { index: 2, count: 3 });
        let slurm = [("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "1")];
        assert_eq!(Shard::from_env(env(&slurm)).unwrap(), Shard { index: 3, count: 4 });
        let retried = [("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_COUNT", "1"), ("GRAFT_SHARDS", "8")];
        assert_eq!(Shard::from_env(env(&retried)).unwrap(), Shard { index: 5, count: 8 });
        let err = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap_err().to_string();
        assert!(err.contains("GRAFT_SHARDS"), "{err}");
        let err = Shard::from_env(env(&[])).unwrap_err().to_string();
        assert!(err.contains("JOB_COMPLETION_INDEX") && err.contains("SLURM_ARRAY_TASK_ID"), "{err}");
        let err = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "3"), ("GRAFT_SHARDS", "3")])).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn every_key_belongs_to_exactly_one_shard_and_parts_are_balanced() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut sizes = [0usize; 3];
        for i in 0..3000 {
            let key = io::sha256_hex(format!("item {i}").as_bytes());
            let owners: Vec<usize> = (0..3).filter(|&s| shards[s].owns(&key)).collect();
            assert_eq!(owners.len(), 1, "{key}");
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (900..1100).contains(&n)), "{sizes:?}");
        // The part depends on the key alone: its first 8 bytes.
        assert!(Shard { index: 1, count: 2 }.owns("0000000000000001ffff"));
        assert!(Shard { index: 0, count: 2 }.owns("unreadable:x") != Shard { index: 1, count: 2 }.owns("unreadable:x"));
    }
}
