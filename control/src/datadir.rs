//! The embedded single-node default: state under one data directory (the
//! SQLite database and a persisted JWT secret), readable by its owner only.
//!
//! The database holds password hashes, join codes and chats, so neither it
//! nor the directory may depend on the process umask: modes are set
//! explicitly, and an existing directory or file that is group/world
//! accessible is tightened (or, when we may not change it, warned about).

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::ControlConfig;
use crate::error::ControlError;
use crate::tokens;

/// File name of the SQLite database inside the data directory.
pub const DATABASE_FILE: &str = "convene.db";
/// File name of the persisted JWT secret inside the data directory.
pub const JWT_SECRET_FILE: &str = "jwt-secret";

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

fn io_err(what: &str, path: &Path, e: io::Error) -> ControlError {
    ControlError::Io {
        context: format!("{what} {}", path.display()),
        source: e,
    }
}

/// Prepares `dir` for the embedded default and points `config` at it: creates
/// the directory (0700) and the SQLite file (0600) when `database_url` is
/// unset, and loads or generates the JWT secret when none is configured.
/// With a `database_url` (e.g. PostgreSQL in a cluster) nothing is touched:
/// the data directory is not in use then.
pub fn apply_embedded(config: &mut ControlConfig, dir: &Path) -> Result<(), ControlError> {
    if config.database_url.is_some() {
        return Ok(());
    }
    ensure_private_dir(dir)?;
    let db = dir.join(DATABASE_FILE);
    ensure_private_file(&db)?;
    // SQLite gives -wal/-shm the mode of the database file when it creates
    // them; companions left by older versions (0644) are tightened here.
    for suffix in ["-wal", "-shm", "-journal"] {
        let companion = companion_path(&db, suffix);
        if companion.exists() {
            tighten(&companion, FILE_MODE)?;
        }
    }
    config.database_url = Some(format!("sqlite://{}?mode=rwc", db.display()));
    if config.jwt_secret.as_deref().is_none_or(str::is_empty) {
        config.jwt_secret = Some(load_or_create_secret(&dir.join(JWT_SECRET_FILE))?);
    }
    Ok(())
}

fn companion_path(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn ensure_private_dir(dir: &Path) -> Result<(), ControlError> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| io_err("creating data directory", dir, e))?;
    }
    // A directory made by an older version is 0755.
    tighten(dir, DIR_MODE)
}

/// Creates `path` empty with mode 0600 unless it exists, so that sqlx's
/// `mode=rwc` never creates it with the umask's 0644.
fn ensure_private_file(path: &Path) -> Result<(), ControlError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("creating", path, e)),
    }
    tighten(path, FILE_MODE)
}

/// Removes group/world access from `path`. Failing to (it belongs to another
/// user) is not fatal — the operator may share it on purpose — but is logged.
fn tighten(path: &Path, mode: u32) -> Result<(), ControlError> {
    let meta = fs::metadata(path).map_err(|e| io_err("inspecting", path, e))?;
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(());
    }
    match fs::set_permissions(path, Permissions::from_mode(mode)) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            from = format_args!("{current:o}"),
            to = format_args!("{mode:o}"),
            "restricted convene state to its owner"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = format_args!("{current:o}"),
            error = %e,
            "convene state is accessible to other local users and could not be restricted"
        ),
    }
    Ok(())
}

/// Reads the secret at `path`, or generates one and stores it there.
fn load_or_create_secret(path: &Path) -> Result<String, ControlError> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let secret = s.trim();
            if secret.is_empty() {
                return Err(ControlError::Config(format!(
                    "{} is empty; delete it to generate a new JWT secret (this signs everyone out)",
                    path.display()
                )));
            }
            tighten(path, FILE_MODE)?;
            tracing::info!(path = %path.display(), "using the JWT secret persisted in the data directory");
            Ok(secret.to_string())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let secret = tokens::random_secret();
            write_atomically(path, secret.as_bytes())?;
            tracing::info!(path = %path.display(), "generated a JWT secret and persisted it in the data directory");
            Ok(secret)
        }
        Err(e) => Err(io_err("reading", path, e)),
    }
}

/// Writes through a 0600 temporary file in the same directory and a rename,
/// so a crash never leaves a truncated secret (which would sign everyone out
/// on the next start, or worse, be accepted as a short key).
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ControlError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or("secret".into(), |n| n.to_string_lossy()),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // The umask can only have removed bits; make the mode exact anyway.
        f.set_permissions(Permissions::from_mode(FILE_MODE))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Persist the rename itself.
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("writing", path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tightens_existing_state_and_keeps_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        let db = dir.join(DATABASE_FILE);
        fs::write(&db, b"").unwrap();
        fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        let wal = companion_path(&db, "-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, Permissions::from_mode(0o644)).unwrap();

        let mut config = ControlConfig::default();
        apply_embedded(&mut config, &dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        let secret = config.jwt_secret.clone().unwrap();
        assert!(secret.len() >= 43, "32 random bytes, base64");
        assert_eq!(mode(&dir.join(JWT_SECRET_FILE)), 0o600);

        let mut again = ControlConfig::default();
        apply_embedded(&mut again, &dir).unwrap();
        assert_eq!(again.jwt_secret.as_deref(), Some(secret.as_str()));
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn configured_secret_and_external_database_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut config = ControlConfig {
            jwt_secret: Some("given".into()),
            ..ControlConfig::default()
        };
        apply_embedded(&mut config, &dir).unwrap();
        assert_eq!(config.jwt_secret.as_deref(), Some("given"));
        assert!(!dir.join(JWT_SECRET_FILE).exists());

        let other = tmp.path().join("unused");
        let mut config = ControlConfig {
            database_url: Some("postgres://db/convene".into()),
            ..ControlConfig::default()
        };
        apply_embedded(&mut config, &other).unwrap();
        assert!(!other.exists());
        assert!(config.jwt_secret.is_none());
    }

    #[test]
    fn empty_secret_file_is_a_config_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(JWT_SECRET_FILE), "\n").unwrap();
        let mut config = ControlConfig::default();
        let err = apply_embedded(&mut config, tmp.path()).unwrap_err();
        assert!(matches!(err, ControlError::Config(_)), "{err}");
    }
}
