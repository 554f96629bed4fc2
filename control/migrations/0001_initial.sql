-- Portable between SQLite and PostgreSQL: TEXT UUID keys, BIGINT unix
-- milliseconds, BIGINT 0/1 flags, no backend-specific types or defaults.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    email          TEXT NOT NULL,
    email_lower    TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Refresh tokens are stored hashed; a family is one login's chain of
-- rotations, revoked as a whole when a used token is presented again.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    join_code   TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL
);

CREATE TABLE team_members (
    team_id   TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role      TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id, team_id);

CREATE TABLE join_requests (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT
);
-- At most one pending request per (team, user): a repeated join returns it.
CREATE UNIQUE INDEX join_requests_one_pending ON join_requests (team_id, user_id) WHERE status = 'pending';
CREATE INDEX join_requests_team ON join_requests (team_id, status, created_at);

CREATE TABLE conferences (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    starts_at    BIGINT NOT NULL,
    waiting_hall BIGINT NOT NULL,
    created_by   TEXT NOT NULL REFERENCES users(id),
    created_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX conferences_team ON conferences (team_id, created_at, id);

CREATE TABLE conference_moderators (
    conference_id TEXT NOT NULL REFERENCES conferences(id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (conference_id, user_id)
);

-- One row per (conference, user) for the conference's lifetime; `seq` orders
-- the queue and is refreshed when a user who left enters again.
CREATE TABLE waiting_entries (
    conference_id TEXT NOT NULL REFERENCES conferences(id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    status        TEXT NOT NULL,
    since         BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    reason        TEXT,
    PRIMARY KEY (conference_id, user_id),
    UNIQUE (conference_id, seq)
);

-- Tokens for (scope, scope_id, user) issued before `not_before` (unix
-- seconds) are rejected. scope is 'team' or 'conference'.
CREATE TABLE revocations (
    scope      TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    PRIMARY KEY (scope, scope_id, user_id)
);
