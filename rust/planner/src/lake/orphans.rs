//! Orphan files: files under a table's `data/` and `metadata/` folders that neither a
//! snapshot, the current metadata file nor its metadata log references. They come from
//! writes whose commit never happened (a crash, a lost race, a superseded compaction) and
//! from maintenance interrupted between its commit and its deletes.
//!
//! [`Lake::delete_orphan_files`] lists the folders (the local file system, or S3 through
//! OpenDAL with the lake's S3 settings) and deletes orphans older than a safety age, so the
//! files of a commit still in flight are never touched; metadata files that fell out of the
//! metadata log have their own age, as readers may have pinned one. Paths are compared in one form
//! (`file://` dropped, `s3a://`/`s3n://` read as `s3://`); if the table's own current
//! metadata file is not among the listed paths the forms disagree and nothing is deleted.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::catalog::Lake;
use super::error::{LakeError, LakeResult};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrphanReport {
    pub table: String,
    /// Files listed under the table's `data/` and `metadata/` folders.
    pub files_listed: usize,
    /// Unreferenced files younger than the safety age, left for a later run.
    pub orphans_kept_young: usize,
    pub orphans_deleted: usize,
    pub bytes_deleted: u64,
}

/// How long metadata files that fell out of the metadata log stay.
#[derive(Debug, Clone, Copy)]
pub struct SupersededMetadata {
    pub min_age: Duration,
    pub keep_newest: usize,
}

/// One listed file: its path (in the form manifests use) and when it was last written.
struct Listed {
    path: String,
    modified: SystemTime,
    bytes: u64,
}

/// `path` in the one form paths are compared in.
fn normal_form(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("file://") {
        return rest.to_string();
    }
    for scheme in ["s3a://", "s3n://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            return format!("s3://{rest}");
        }
    }
    path.to_string()
}

impl Lake {
    /// Deletes the files under table `name`'s folders that nothing references and that are
    /// older than `min_age`. Metadata files (`*.metadata.json`) that fell out of the metadata
    /// log, which a reader may still have pinned, go once older than `superseded.min_age` or
    /// once `superseded.keep_newest` newer ones exist.
    pub async fn delete_orphan_files(&self, name: &str, min_age: Duration, superseded: SupersededMetadata) -> LakeResult<OrphanReport> {
        let table = self.load_table(name).await?;
        let metadata = table.metadata();
        let location = metadata.location().trim_end_matches('/').to_string();
        // Listed before the references are read: a file committed in between is referenced.
        let mut listed = Vec::new();
        for folder in ["data", "metadata"] {
            listed.extend(self.list_files(name, &format!("{location}/{folder}/")).await?);
        }
        let table = self.load_table(name).await?;
        let metadata = table.metadata();
        let mut referenced: HashSet<String> = self
            .referenced_files(&table, name, metadata.snapshots().cloned().collect())
            .await?
            .iter()
            .map(|p| normal_form(p))
            .collect();
        let current = table.metadata_location().map(normal_form);
        referenced.extend(current.iter().cloned());
        referenced.extend(metadata.metadata_log().iter().map(|log| normal_form(&log.metadata_file)));
        referenced.extend(metadata.statistics_iter().map(|s| normal_form(&s.statistics_path)));
        referenced.extend(metadata.partition_statistics_iter().map(|s| normal_form(&s.statistics_path)));

        let mut report = OrphanReport { table: name.to_string(), files_listed: listed.len(), ..Default::default() };
        let Some(current) = current else { return Ok(report) };
        let listed_paths: HashSet<&str> = listed.iter().map(|f| f.path.as_str()).collect();
        let known = std::iter::once(current.clone())
            .chain(metadata.metadata_log().iter().map(|log| normal_form(&log.metadata_file)));
        if !listed_paths.is_empty() && !known.into_iter().any(|path| listed_paths.contains(path.as_str())) {
            // The listing names files differently from the metadata: delete nothing.
            tracing::warn!(component = "lake", event = "orphans_skipped", table = %name, current = %current,
                "none of the table's metadata files was among the listed files; no orphan deleted");
            return Ok(report);
        }
        let now = SystemTime::now();
        let cutoff = now.checked_sub(min_age).unwrap_or(SystemTime::UNIX_EPOCH);
        let metadata_cutoff = now.checked_sub(superseded.min_age).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut unreferenced: Vec<Listed> = listed.into_iter().filter(|f| !referenced.contains(&f.path)).collect();
        unreferenced.sort_by_key(|f| std::cmp::Reverse(f.modified)); // newest first
        let mut newer_metadata = 0usize;
        for file in unreferenced {
            let young = if file.path.ends_with(".metadata.json") {
                newer_metadata += 1;
                file.modified > metadata_cutoff && newer_metadata <= superseded.keep_newest
            } else {
                file.modified > cutoff
            };
            if young {
                report.orphans_kept_young += 1;
                continue;
            }
            match table.file_io().delete(&file.path).await {
                Ok(()) => {
                    report.orphans_deleted += 1;
                    report.bytes_deleted += file.bytes;
                    self.forget(&file.path);
                }
                Err(e) => tracing::warn!(component = "lake", event = "orphan_not_deleted", table = %name, file = %file.path, error = %e),
            }
        }
        tracing::info!(
            target: "weir::audit",
            component = "lake",
            event = "orphans_deleted",
            table = %name,
            listed = report.files_listed,
            deleted = report.orphans_deleted,
            bytes = report.bytes_deleted,
            kept_young = report.orphans_kept_young,
        );
        Ok(report)
    }

    /// Every file under `folder` (a local path or `s3://bucket/prefix/`, ending in `/`).
    async fn list_files(&self, name: &str, folder: &str) -> LakeResult<Vec<Listed>> {
        let failed = |e: String| LakeError::Table { table: name.to_string(), message: format!("cannot list {folder}: {e}") };
        if let Some(rest) = folder.strip_prefix("s3://").or_else(|| folder.strip_prefix("s3a://")).or_else(|| folder.strip_prefix("s3n://")) {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let operator = self.s3_operator(bucket).map_err(|e| failed(e.to_string()))?;
            let entries = operator.list_with(prefix).recursive(true).await.map_err(|e| failed(e.to_string()))?;
            let mut files = Vec::new();
            for entry in entries {
                let meta = entry.metadata();
                if !meta.is_file() {
                    continue;
                }
                // A listing without times cannot prove a file is old: keep it.
                let modified = meta.last_modified().map(SystemTime::from).unwrap_or_else(SystemTime::now);
                files.push(Listed { path: format!("s3://{bucket}/{}", entry.path()), modified, bytes: meta.content_length() });
            }
            return Ok(files);
        }
        let root = PathBuf::from(folder.strip_prefix("file://").unwrap_or(folder));
        tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            let mut folders = vec![root];
            while let Some(dir) = folders.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.to_string()),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| e.to_string())?;
                    let meta = entry.metadata().map_err(|e| e.to_string())?;
                    if meta.is_dir() {
                        folders.push(entry.path());
                    } else if meta.is_file() {
                        let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
                        files.push(Listed { path: entry.path().display().to_string(), modified, bytes: meta.len() });
                    }
                }
            }
            Ok(files)
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)
    }

    /// An OpenDAL operator for `bucket` with the lake's S3 settings (the same ones its
    /// FileIO uses).
    fn s3_operator(&self, bucket: &str) -> opendal::Result<opendal::Operator> {
        let s3 = &self.config().s3;
        let mut builder = opendal::services::S3::default().bucket(bucket).root("/");
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.region(region);
        }
        if let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            builder = builder.access_key_id(key).secret_access_key(secret);
        }
        if let Some(token) = &s3.session_token {
            builder = builder.session_token(token);
        }
        if !s3.path_style {
            builder = builder.enable_virtual_host_style();
        }
        Ok(opendal::Operator::new(builder)?.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::normal_form;

    #[test]
    fn paths_compare_in_one_form() {
        assert_eq!(normal_form("file:///w/raw/t/data/a.parquet"), "/w/raw/t/data/a.parquet");
        assert_eq!(normal_form("s3a://b/w/t/data/a.parquet"), "s3://b/w/t/data/a.parquet");
        assert_eq!(normal_form("/w/raw/t/data/a.parquet"), "/w/raw/t/data/a.parquet");
    }
}
