-- Team collaboration: posts with comments, and direct/group chats.
-- Same portability rules as 0001: TEXT UUIDs, BIGINT unix milliseconds.

CREATE TABLE posts (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    author_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at  BIGINT
);
CREATE INDEX posts_team ON posts (team_id, created_at, id);

CREATE TABLE comments (
    id         TEXT PRIMARY KEY,
    post_id    TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    author_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at  BIGINT
);
CREATE INDEX comments_post ON comments (post_id, created_at, id);

-- `last_seq` is the per-chat message counter: a sender increments it in the
-- message's insert transaction, which also serialises concurrent senders
-- of one chat (row lock on PostgreSQL, single writer on SQLite).
-- `direct_key` is "<smaller user id>:<larger user id>" for direct chats and
-- NULL for groups, so a pair of users has at most one direct chat.
CREATE TABLE chats (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    title            TEXT NOT NULL,
    direct_key       TEXT UNIQUE,
    created_by       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at       BIGINT NOT NULL,
    last_seq         BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL
);

CREATE TABLE chat_members (
    chat_id       TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at     BIGINT NOT NULL,
    last_read_seq BIGINT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user ON chat_members (user_id, chat_id);

CREATE TABLE chat_messages (
    id         TEXT PRIMARY KEY,
    chat_id    TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    sender_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    text       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at  BIGINT,
    UNIQUE (chat_id, seq),
    UNIQUE (chat_id, sender_id, client_id)
);
