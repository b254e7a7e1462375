//! Media files (DESIGN §3): photos and resumes uploaded by their owners, stored
//! content-addressed as `<dir>/<group>/<sha256 hex>.<ext>`. The type is recognised from the
//! content's magic bytes, never from what the client claims, and a file name is checked
//! before it touches the file system, so no request can reach outside the media directory.
//!
//! A profile records the file's link (`/api/v1/media/<group>/<name>`); the same bytes always
//! get the same name, so storing is idempotent and a served file never changes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::{
    fmt::{self, Write as _},
    io,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use crate::http::ApiError;

/// The link prefix of a media file, as routed by query-api.
pub const LINK_PREFIX: &str = "/api/v1/media";

/// The image served in place of a missing file: 64×64 grey, a generic avatar.
pub const PLACEHOLDER_PNG: &[u8] = include_bytes!("../assets/placeholder.png");

/// A kind of upload, each with its own subdirectory and accepted types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaGroup {
    /// Profile photos: PNG or JPEG.
    Photos,
    /// Freelancer resumes: PDF.
    Resumes,
}

impl MediaGroup {
    /// Every group, in the order they are described.
    pub const ALL: [Self; 2] = [Self::Photos, Self::Resumes];

    /// The group's name in paths, e.g. `photos`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Photos => "photos",
            Self::Resumes => "resumes",
        }
    }

    /// The types this group accepts.
    pub fn accepts(self) -> &'static [MediaKind] {
        match self {
            Self::Photos => &[MediaKind::Png, MediaKind::Jpeg],
            Self::Resumes => &[MediaKind::Pdf],
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Self::Photos => "PNG or JPEG images",
            Self::Resumes => "PDF documents",
        }
    }
}

impl fmt::Display for MediaGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MediaGroup {
    type Err = MediaError;

    fn from_str(s: &str) -> Result<Self, MediaError> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| MediaError::UnknownGroup(s.chars().take(40).collect()))
    }
}

/// A file type recognised by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `\x89PNG\r\n\x1a\n`.
    Png,
    /// `FF D8 FF`.
    Jpeg,
    /// `%PDF-`.
    Pdf,
}

impl MediaKind {
    const ALL: [Self; 3] = [Self::Png, Self::Jpeg, Self::Pdf];

    /// The type of `bytes`, by their magic bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|k| bytes.starts_with(k.magic()))
    }

    fn magic(self) -> &'static [u8] {
        match self {
            Self::Png => b"\x89PNG\r\n\x1a\n",
            Self::Jpeg => b"\xFF\xD8\xFF",
            Self::Pdf => b"%PDF-",
        }
    }

    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Pdf => "pdf",
        }
    }

    /// The `Content-Type` it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Pdf => "application/pdf",
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.extension() == ext)
    }
}

/// A checked file name `[0-9a-f]{64}\.(png|jpg|pdf)`: nothing else reaches the file system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaName {
    hash: String,
    kind: MediaKind,
}

impl MediaName {
    /// Parse a requested name; anything but a content address is [`MediaError::InvalidName`].
    pub fn parse(raw: &str) -> Result<Self, MediaError> {
        let (hash, ext) = raw.split_once('.').ok_or(MediaError::InvalidName)?;
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if hash.len() != 64 || !hash.chars().all(hex) {
            return Err(MediaError::InvalidName);
        }
        let kind = MediaKind::from_extension(ext).ok_or(MediaError::InvalidName)?;
        Ok(Self {
            hash: hash.to_owned(),
            kind,
        })
    }

    fn of(bytes: &[u8], kind: MediaKind) -> Self {
        let digest = Sha256::digest(bytes);
        let mut hash = String::with_capacity(64);
        for byte in digest {
            let _ = write!(hash, "{byte:02x}");
        }
        Self { hash, kind }
    }

    /// The file's type.
    pub fn kind(&self) -> MediaKind {
        self.kind
    }
}

impl fmt::Display for MediaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.hash, self.kind.extension())
    }
}

/// A file as stored (or as it would be stored: see [`MediaStore::address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its group.
    pub group: MediaGroup,
    /// Its content-addressed name, e.g. `<sha256>.png`.
    pub name: String,
    /// Its type.
    pub content_type: &'static str,
    /// Its size in bytes.
    pub size: u64,
}

impl StoredFile {
    /// The link a profile records, e.g. `/api/v1/media/photos/<sha256>.png`.
    pub fn link(&self) -> String {
        format!("{LINK_PREFIX}/{}/{}", self.group, self.name)
    }
}

/// A file's bytes, to serve.
#[derive(Debug, Clone)]
pub struct MediaContent {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Their type.
    pub content_type: &'static str,
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GroupSummary {
    /// The group.
    pub group: MediaGroup,
    /// Number of files.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// One stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MediaFile {
    /// Content-addressed name, e.g. `<sha256>.png`.
    pub name: String,
    /// Where it is served.
    pub link: String,
    /// Size in bytes.
    pub size: u64,
    /// Its type, e.g. `image/png`.
    pub content_type: String,
    /// When it was (last) written.
    pub modified: DateTime<Utc>,
}

/// What can go wrong with media.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The path names no group.
    #[error("unknown media group `{0}`: expected photos or resumes")]
    UnknownGroup(String),
    /// The content is not of a type the group accepts.
    #[error("{group} accept only {expected}")]
    UnsupportedType {
        /// The group uploaded to.
        group: MediaGroup,
        /// What it accepts, for the message.
        expected: &'static str,
    },
    /// The requested name is not a content address of this group.
    #[error("not a media file name: expected <sha256 hex>.<png|jpg|pdf>")]
    InvalidName,
    /// No such file.
    #[error("no such media file")]
    NotFound,
    /// The file system failed.
    #[error("media storage failed: {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::UnknownGroup(_) => Self::NotFound("media-group-not-found"),
            MediaError::UnsupportedType { .. } => Self::UnsupportedMediaType(e.to_string()),
            MediaError::InvalidName => Self::BadRequest {
                code: "invalid-media-name",
                detail: e.to_string(),
            },
            MediaError::NotFound => Self::NotFound("media-not-found"),
            MediaError::Io { .. } => Self::Unexpected(e.into()),
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MediaError {
    let path = path.to_owned();
    move |source| MediaError::Io { action, path, source }
}

/// Content-addressed files under one directory, one subdirectory per group.
#[derive(Debug, Clone)]
pub struct MediaStore {
    root: Arc<PathBuf>,
}

impl MediaStore {
    /// A store over `dir` (created when the first file is stored).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            root: Arc::new(dir.into()),
        }
    }

    /// The media directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// What `bytes` would be stored as in `group`, without writing: the type check and the
    /// content address.
    pub fn address(group: MediaGroup, bytes: &[u8]) -> Result<StoredFile, MediaError> {
        let unsupported = || MediaError::UnsupportedType {
            group,
            expected: group.expected(),
        };
        let kind = MediaKind::sniff(bytes).ok_or_else(unsupported)?;
        if !group.accepts().contains(&kind) {
            return Err(unsupported());
        }
        Ok(StoredFile {
            group,
            name: MediaName::of(bytes, kind).to_string(),
            content_type: kind.content_type(),
            size: bytes.len() as u64,
        })
    }

    /// Store `bytes` in `group` after checking their type. Idempotent: the same bytes are the
    /// same file. The write is atomic (a temporary file renamed into place), so a reader never
    /// sees half a file.
    #[tracing::instrument(skip_all, fields(%group, size = bytes.len()))]
    pub async fn store(&self, group: MediaGroup, bytes: &[u8]) -> Result<StoredFile, MediaError> {
        let file = Self::address(group, bytes)?;
        let dir = self.root.join(group.as_str());
        let target = dir.join(&file.name);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Ok(file);
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_error("creating", &dir))?;
        let temporary = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let written = async {
            tokio::fs::write(&temporary, bytes)
                .await
                .map_err(io_error("writing", &temporary))?;
            // Durable before it becomes visible under its name.
            tokio::fs::File::open(&temporary)
                .await
                .map_err(io_error("opening", &temporary))?
                .sync_all()
                .await
                .map_err(io_error("syncing", &temporary))?;
            tokio::fs::rename(&temporary, &target)
                .await
                .map_err(io_error("renaming", &target))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        written?;
        tracing::info!(name = %file.name, "media file stored");
        Ok(file)
    }

    /// Every group with its file count and total size.
    pub async fn describe(&self) -> Result<Vec<GroupSummary>, MediaError> {
        let mut summaries = Vec::with_capacity(MediaGroup::ALL.len());
        for group in MediaGroup::ALL {
            let files = self.list(group).await?;
            summaries.push(GroupSummary {
                group,
                files: files.len() as u64,
                bytes: files.iter().map(|f| f.size).sum(),
            });
        }
        Ok(summaries)
    }

    /// The files of `group`, by name; temporary and foreign files are left out.
    pub async fn list(&self, group: MediaGroup) -> Result<Vec<MediaFile>, MediaError> {
        let dir = self.root.join(group.as_str());
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("listing", &dir)(e)),
        };
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(io_error("listing", &dir))? {
            let Some(name) = entry.file_name().to_str().and_then(|n| MediaName::parse(n).ok()) else {
                continue;
            };
            if !group.accepts().contains(&name.kind()) {
                continue;
            }
            let metadata = match entry.metadata().await {
                Ok(m) if m.is_file() => m,
                // Gone since it was listed, or not a file: not part of the listing.
                _ => continue,
            };
            let content_type = name.kind().content_type().to_owned();
            let name = name.to_string();
            files.push(MediaFile {
                link: format!("{LINK_PREFIX}/{group}/{name}"),
                size: metadata.len(),
                content_type,
                modified: metadata.modified().map(DateTime::<Utc>::from).unwrap_or_default(),
                name,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// The bytes of `group/name`. A name that is not a content address of this group is
    /// [`MediaError::InvalidName`] and never touches the file system.
    pub async fn open(&self, group: MediaGroup, name: &str) -> Result<MediaContent, MediaError> {
        let name = MediaName::parse(name)?;
        if !group.accepts().contains(&name.kind()) {
            return Err(MediaError::InvalidName);
        }
        let path = self.root.join(group.as_str()).join(name.to_string());
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(MediaContent {
                bytes,
                content_type: name.kind().content_type(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MediaError::NotFound),
            Err(e) => Err(io_error("reading", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR fake png body";
    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF fake jpeg body";
    const PDF: &[u8] = b"%PDF-1.4\n% fake pdf body\n%%EOF\n";

    fn store() -> (tempfile::TempDir, MediaStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = MediaStore::new(dir.path().join("media"));
        (dir, store)
    }

    #[test]
    fn groups_parse_from_their_path_names() {
        assert_eq!("photos".parse::<MediaGroup>().ok(), Some(MediaGroup::Photos));
        assert_eq!("resumes".parse::<MediaGroup>().ok(), Some(MediaGroup::Resumes));
        for bad in ["Photos", "videos", "", "photos/"] {
            assert!(
                matches!(bad.parse::<MediaGroup>(), Err(MediaError::UnknownGroup(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn types_are_recognised_by_content() {
        assert_eq!(MediaKind::sniff(PNG), Some(MediaKind::Png));
        assert_eq!(MediaKind::sniff(JPEG), Some(MediaKind::Jpeg));
        assert_eq!(MediaKind::sniff(PDF), Some(MediaKind::Pdf));
        assert_eq!(MediaKind::sniff(b"hello, world"), None);
        assert_eq!(MediaKind::sniff(b""), None);
        assert_eq!(MediaKind::sniff(b"\x89PNG"), None, "a truncated signature");
        assert_eq!(MediaKind::sniff(PLACEHOLDER_PNG), Some(MediaKind::Png));
    }

    #[test]
    fn each_group_accepts_only_its_types() {
        let cases: [(MediaGroup, &[u8], bool); 7] = [
            (MediaGroup::Photos, PNG, true),
            (MediaGroup::Photos, JPEG, true),
            (MediaGroup::Photos, PDF, false),
            (MediaGroup::Photos, b"GIF89a", false),
            (MediaGroup::Resumes, PDF, true),
            (MediaGroup::Resumes, PNG, false),
            (MediaGroup::Resumes, b"plain text", false),
        ];
        for (group, bytes, accepted) in cases {
            let result = MediaStore::address(group, bytes);
            match accepted {
                true => assert!(result.is_ok(), "{group} should accept {bytes:?}"),
                false => assert!(
                    matches!(result, Err(MediaError::UnsupportedType { .. })),
                    "{group} should refuse {bytes:?}"
                ),
            }
        }
    }

    #[test]
    fn the_name_is_the_sha256_of_the_content() {
        let file = MediaStore::address(MediaGroup::Resumes, b"%PDF-").expect("pdf");
        // sha256("%PDF-"), computed independently (python3 hashlib).
        assert_eq!(
            file.name,
            "38523c087796e5d5dd1cf9bad1fb026781a838dd9dd2cf8af58b9f6502a46778.pdf"
        );
        assert_eq!(file.link(), format!("/api/v1/media/resumes/{}", file.name));
        assert_eq!(file.content_type, "application/pdf");
        assert_eq!(file.size, 5);
        let jpeg = MediaStore::address(MediaGroup::Photos, JPEG).expect("jpeg");
        assert!(jpeg.name.ends_with(".jpg"));
    }

    #[tokio::test]
    async fn storing_writes_the_bytes_once_under_their_address() {
        let (_tmp, store) = store();
        let first = store.store(MediaGroup::Photos, PNG).await.expect("stored");
        let again = store.store(MediaGroup::Photos, PNG).await.expect("stored again");
        assert_eq!(first, again, "the same bytes are the same file");
        let on_disk = std::fs::read(store.dir().join("photos").join(&first.name)).expect("on disk");
        assert_eq!(on_disk, PNG);
        let entries: Vec<_> = std::fs::read_dir(store.dir().join("photos"))
            .expect("dir")
            .collect();
        assert_eq!(entries.len(), 1, "no temporary file is left behind");
        let content = store.open(MediaGroup::Photos, &first.name).await.expect("opened");
        assert_eq!(content.bytes, PNG);
        assert_eq!(content.content_type, "image/png");
    }

    #[tokio::test]
    async fn refused_content_writes_nothing() {
        let (_tmp, store) = store();
        let result = store.store(MediaGroup::Photos, b"just text").await;
        assert!(matches!(result, Err(MediaError::UnsupportedType { .. })));
        assert!(!store.dir().exists());
    }

    #[tokio::test]
    async fn describe_and_list_report_what_is_stored() {
        let (_tmp, store) = store();
        let empty = store.describe().await.expect("described");
        assert_eq!(
            empty,
            vec![
                GroupSummary {
                    group: MediaGroup::Photos,
                    files: 0,
                    bytes: 0
                },
                GroupSummary {
                    group: MediaGroup::Resumes,
                    files: 0,
                    bytes: 0
                },
            ]
        );
        let png = store.store(MediaGroup::Photos, PNG).await.expect("png");
        let jpeg = store.store(MediaGroup::Photos, JPEG).await.expect("jpeg");
        store.store(MediaGroup::Resumes, PDF).await.expect("pdf");
        // A leftover temporary file and a stray file are not media.
        std::fs::write(store.dir().join("photos/.tmp-abc"), b"partial").expect("temp");
        std::fs::write(store.dir().join("photos/notes.txt"), b"stray").expect("stray");

        let described = store.describe().await.expect("described");
        assert_eq!(described[0].files, 2);
        assert_eq!(described[0].bytes, (PNG.len() + JPEG.len()) as u64);
        assert_eq!(described[1].files, 1);
        assert_eq!(described[1].bytes, PDF.len() as u64);

        let photos = store.list(MediaGroup::Photos).await.expect("listed");
        let mut expected = vec![png.name.clone(), jpeg.name.clone()];
        expected.sort();
        assert_eq!(
            photos.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            expected
        );
        let listed_png = photos.iter().find(|f| f.name == png.name).expect("png listed");
        assert_eq!(listed_png.size, PNG.len() as u64);
        assert_eq!(listed_png.content_type, "image/png");
        assert_eq!(listed_png.link, png.link());
    }

    #[tokio::test]
    async fn open_refuses_names_that_are_not_content_addresses() {
        let (_tmp, store) = store();
        let hash = "a".repeat(64);
        let bad = [
            "../../etc/passwd".to_owned(),
            format!("../{hash}.png"),
            format!("{hash}.png/../x"),
            format!("{}.png", "A".repeat(64)),
            format!("{}.png", "a".repeat(63)),
            format!("{hash}.gif"),
            format!("{hash}.PNG"),
            hash.clone(),
            format!("{hash}.pdf"), // a resume's type is not a photo
            ".tmp-abc".to_owned(),
            String::new(),
        ];
        for name in bad {
            assert!(
                matches!(
                    store.open(MediaGroup::Photos, &name).await,
                    Err(MediaError::InvalidName)
                ),
                "{name:?} should be refused"
            );
        }
        assert!(matches!(
            store.open(MediaGroup::Photos, &format!("{hash}.png")).await,
            Err(MediaError::NotFound)
        ));
    }
}
