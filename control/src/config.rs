//! Command-line / environment configuration of the control plane.

use clap::Args;
use convene_turn_config::IceConfig;

/// Control-plane settings. Every limit has a default fit for production;
/// [`ControlConfig::for_tests`] builds one without going through clap.
#[derive(Args, Clone, Debug)]
pub struct ControlConfig {
    /// Database URL: `sqlite://path/to/file.db` or `postgres://…`. When absent
    /// the caller must fill in a SQLite path before calling `Control::start`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL. Enables the Redis event bus and the membership cache.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// HS256 secret for access and room tokens; prefer the environment
    /// variable (flags show in `ps`). When absent with the embedded SQLite
    /// default, one is generated once and kept in `<data dir>/jwt-secret`;
    /// with DATABASE_URL a random one per start (set it for clusters).
    #[arg(long, env = "CONVENE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Shared secret for `/v1/internal/*`, sent as `Authorization: Bearer`.
    /// The internal API is disabled when absent.
    #[arg(long, env = "CONVENE_INTERNAL_SECRET", hide_env_values = true)]
    pub internal_secret: Option<String>,

    /// Public base URL of this deployment; `signaling_url` is derived from it.
    /// Left at this default, `convene up` and `convene control` use
    /// `http://<--http-addr>` instead (`localhost` for a wildcard bind).
    #[arg(
        long,
        env = "CONVENE_PUBLIC_URL",
        default_value = "http://localhost:8080"
    )]
    pub public_url: String,

    /// Allowed CORS origins (comma-separated); `*` allows any. Empty: no CORS.
    #[arg(long, env = "CONVENE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CONVENE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Access-token lifetime, seconds.
    #[arg(long, env = "CONVENE_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: u64,

    /// Refresh-token lifetime, seconds.
    #[arg(long, env = "CONVENE_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: u64,

    /// A waiter with no heartbeat (from the signaling service) for this many
    /// seconds leaves the waiting hall, so a dead signaling node leaves no
    /// ghost waiters behind.
    #[arg(long, env = "CONVENE_WAITING_TTL_SECS", default_value_t = 60)]
    pub waiting_ttl_secs: u64,

    /// Room-token lifetime, seconds. Short: clients fetch a new one per join.
    #[arg(long, env = "CONVENE_ROOM_TOKEN_TTL", default_value_t = 300)]
    pub room_token_ttl: u64,

    /// Login attempts allowed per account within the window.
    #[arg(
        long,
        env = "CONVENE_LOGIN_MAX_ATTEMPTS_PER_ACCOUNT",
        default_value_t = 10
    )]
    pub login_max_attempts_per_account: u32,

    /// Login attempts allowed per client IP within the window.
    #[arg(long, env = "CONVENE_LOGIN_MAX_ATTEMPTS_PER_IP", default_value_t = 50)]
    pub login_max_attempts_per_ip: u32,

    /// Length of the login rate-limit window, seconds.
    #[arg(long, env = "CONVENE_LOGIN_WINDOW_SECS", default_value_t = 300)]
    pub login_window_secs: u64,

    /// Default page size of list endpoints.
    #[arg(long, env = "CONVENE_DEFAULT_PAGE_LIMIT", default_value_t = 50)]
    pub default_page_limit: u32,

    /// Largest `?limit=` accepted by list endpoints (larger values are capped).
    #[arg(long, env = "CONVENE_MAX_PAGE_LIMIT", default_value_t = 200)]
    pub max_page_limit: u32,

    /// Lifetime of cached team-membership lookups in Redis, seconds.
    #[arg(long, env = "CONVENE_MEMBERSHIP_CACHE_TTL", default_value_t = 60)]
    pub membership_cache_ttl: u64,

    /// Argon2id memory cost in KiB (OWASP minimum 19 MiB).
    #[arg(long, env = "CONVENE_ARGON2_MEMORY_KIB", default_value_t = 19 * 1024)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations.
    #[arg(long, env = "CONVENE_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// Password hashes (registration) and checks (login) computed at once.
    /// Each holds `argon2_memory_kib` of memory and a core while it runs, so
    /// this bounds both. Default: the number of CPU cores.
    #[arg(long, env = "CONVENE_PASSWORD_HASH_CONCURRENCY")]
    pub password_hash_concurrency: Option<usize>,

    /// How long a registration or login waits for a hashing slot before it is
    /// answered 503 with `Retry-After`, milliseconds.
    #[arg(long, env = "CONVENE_PASSWORD_HASH_WAIT_MS", default_value_t = 1000)]
    pub password_hash_wait_ms: u64,

    /// Registrations allowed per client IP within the window (429 with
    /// `Retry-After` above). Behind a reverse proxy all clients share the
    /// proxy's address.
    #[arg(long, env = "CONVENE_REGISTER_MAX_PER_IP", default_value_t = 20)]
    pub register_max_per_ip: u32,

    /// Length of the registration rate-limit window, seconds.
    #[arg(long, env = "CONVENE_REGISTER_WINDOW_SECS", default_value_t = 3600)]
    pub register_window_secs: u64,

    /// Maximum connections in the database pool.
    #[arg(long, env = "CONVENE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Longest post title, characters.
    #[arg(long, env = "CONVENE_POST_TITLE_MAX_CHARS", default_value_t = 200)]
    pub post_title_max_chars: usize,

    /// Longest post body, characters.
    #[arg(long, env = "CONVENE_POST_BODY_MAX_CHARS", default_value_t = 10_000)]
    pub post_body_max_chars: usize,

    /// Longest comment, characters.
    #[arg(long, env = "CONVENE_COMMENT_MAX_CHARS", default_value_t = 4_000)]
    pub comment_max_chars: usize,

    /// Longest chat title, characters.
    #[arg(long, env = "CONVENE_CHAT_TITLE_MAX_CHARS", default_value_t = 100)]
    pub chat_title_max_chars: usize,

    /// Most members of one chat, creator included.
    #[arg(long, env = "CONVENE_CHAT_MAX_MEMBERS", default_value_t = 100)]
    pub chat_max_members: usize,

    /// Longest chat message, characters.
    #[arg(long, env = "CONVENE_MESSAGE_MAX_CHARS", default_value_t = 4_000)]
    pub message_max_chars: usize,

    /// Longest `client_id` of a chat message, characters.
    #[arg(long, env = "CONVENE_CLIENT_ID_MAX_CHARS", default_value_t = 64)]
    pub client_id_max_chars: usize,

    /// Default page size of `GET /v1/chats/{id}/messages`.
    #[arg(long, env = "CONVENE_DEFAULT_MESSAGE_PAGE_LIMIT", default_value_t = 50)]
    pub default_message_page_limit: u32,

    /// Largest `?limit=` of `GET /v1/chats/{id}/messages` (larger values are capped).
    #[arg(long, env = "CONVENE_MAX_MESSAGE_PAGE_LIMIT", default_value_t = 500)]
    pub max_message_page_limit: u32,

    #[command(flatten)]
    pub ice: IceConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            database_url: None,
            redis_url: None,
            jwt_secret: None,
            internal_secret: None,
            public_url: "http://localhost:8080".into(),
            cors_origins: Vec::new(),
            max_body_bytes: 64 * 1024,
            access_token_ttl: 900,
            refresh_token_ttl: 30 * 24 * 3600,
            room_token_ttl: 300,
            login_max_attempts_per_account: 10,
            login_max_attempts_per_ip: 50,
            login_window_secs: 300,
            default_page_limit: 50,
            max_page_limit: 200,
            membership_cache_ttl: 60,
            waiting_ttl_secs: 60,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            password_hash_concurrency: None,
            password_hash_wait_ms: 1000,
            register_max_per_ip: 20,
            register_window_secs: 3600,
            db_max_connections: 10,
            post_title_max_chars: 200,
            post_body_max_chars: 10_000,
            comment_max_chars: 4_000,
            chat_title_max_chars: 100,
            chat_max_members: 100,
            message_max_chars: 4_000,
            client_id_max_chars: 64,
            default_message_page_limit: 50,
            max_message_page_limit: 500,
            ice: IceConfig::default(),
        }
    }
}

impl ControlConfig {
    /// Production defaults with a fixed JWT/internal secret and a cheap
    /// (still argon2id) password hash, so test suites stay fast. Suites
    /// register many users from 127.0.0.1 on a busy machine: the registration
    /// limit and the wait for a hashing slot are out of their way (tests of
    /// those limits set their own).
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        ControlConfig {
            database_url: Some(database_url.into()),
            jwt_secret: Some("test-jwt-secret-which-is-long-enough".into()),
            internal_secret: Some("test-internal-secret".into()),
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            password_hash_wait_ms: 60_000,
            register_max_per_ip: 1_000_000,
            db_max_connections: 5,
            ..ControlConfig::default()
        }
    }

    /// `ws(s)://<public host>/v1/ws`.
    pub fn signaling_url(&self) -> String {
        let base = self.public_url.trim_end_matches('/');
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_string()
        };
        format!("{ws}/v1/ws")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        control: ControlConfig,
    }

    #[test]
    fn clap_defaults_match_default() {
        let cli = Cli::try_parse_from(["convene"]).unwrap();
        let (parsed, def) = (cli.control, ControlConfig::default());
        assert_eq!(parsed.max_body_bytes, def.max_body_bytes);
        assert_eq!(parsed.room_token_ttl, def.room_token_ttl);
        assert_eq!(parsed.login_window_secs, def.login_window_secs);
        assert_eq!(parsed.max_page_limit, def.max_page_limit);
        assert_eq!(parsed.argon2_memory_kib, def.argon2_memory_kib);
        assert_eq!(
            parsed.password_hash_concurrency,
            def.password_hash_concurrency
        );
        assert_eq!(parsed.password_hash_wait_ms, def.password_hash_wait_ms);
        assert_eq!(parsed.register_max_per_ip, def.register_max_per_ip);
        assert_eq!(parsed.register_window_secs, def.register_window_secs);
        assert_eq!(parsed.public_url, def.public_url);
        assert_eq!(parsed.post_body_max_chars, def.post_body_max_chars);
        assert_eq!(parsed.message_max_chars, def.message_max_chars);
        assert_eq!(parsed.chat_max_members, def.chat_max_members);
        assert_eq!(parsed.max_message_page_limit, def.max_message_page_limit);
        let cli = Cli::try_parse_from([
            "convene",
            "--cors-origins",
            "https://a.example,https://b.example",
            "--public-url",
            "https://meet.example/",
        ])
        .unwrap();
        assert_eq!(cli.control.cors_origins.len(), 2);
        assert_eq!(cli.control.signaling_url(), "wss://meet.example/v1/ws");
    }
}
