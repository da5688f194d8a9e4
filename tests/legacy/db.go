package main

import (
	"context"
	"database/sql"
	"time"

	_ "modernc.org/sqlite"
)

// The legacy's goose migration, verbatim in shape: created only when missing.
const schema = `
CREATE TABLE IF NOT EXISTS users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE IF NOT EXISTS poller_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_key BLOB
);`

// User is the JSON shape of GET /users (no password hash).
type User struct {
	ID        int64
	Email     string
	CreatedAt time.Time
}

// APIKey is the JSON shape of the api_keys routes.
type APIKey struct {
	ID        string
	Key       string
	Name      string
	CreatedAt time.Time
}

type Store struct{ db *sql.DB }

func openStore(path string) (*Store, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

func (s *Store) Close() error { return s.db.Close() }

func (s *Store) HasUsers(ctx context.Context) (bool, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n > 0, err
}

func (s *Store) CreateUser(ctx context.Context, email, hash string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (email, password_hash) VALUES (?, ?)`, email, hash)
	return err
}

func (s *Store) PasswordHash(ctx context.Context, email string) (string, error) {
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE email = ?`, email).Scan(&h)
	return h, err
}

func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, email, created_at FROM users ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Email, &u.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id)
	return err
}

func (s *Store) CreateAPIKey(ctx context.Context, id, key, name string) (APIKey, error) {
	var k APIKey
	err := s.db.QueryRowContext(ctx,
		`INSERT INTO api_keys (id, key, name) VALUES (?, ?, ?) RETURNING id, key, name, created_at`,
		id, key, name).Scan(&k.ID, &k.Key, &k.Name, &k.CreatedAt)
	return k, err
}

func (s *Store) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, key, name, created_at FROM api_keys ORDER BY created_at DESC, rowid DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []APIKey{}
	for rows.Next() {
		var k APIKey
		if err := rows.Scan(&k.ID, &k.Key, &k.Name, &k.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *Store) GetAPIKey(ctx context.Context, key string) (APIKey, error) {
	var k APIKey
	err := s.db.QueryRowContext(ctx, `SELECT id, key, name, created_at FROM api_keys WHERE key = ? LIMIT 1`, key).
		Scan(&k.ID, &k.Key, &k.Name, &k.CreatedAt)
	return k, err
}

func (s *Store) DeleteAPIKey(ctx context.Context, key string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM api_keys WHERE key = ?`, key)
	return err
}
