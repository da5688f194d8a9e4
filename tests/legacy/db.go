package main

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"
)

// The legacy's goose migrations, verbatim (db/migrations in junjo-server).
//
//go:embed migrations/*.sql
var migrations embed.FS

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

type Store struct {
	db   *sql.DB
	errs DBErrors
}

// DBErrors counts the queries that failed, for /_standin/db-errors: how often
// the legacy's missing busy timeout turns a lock held by another connection
// or process into a failed request.
type DBErrors struct{ busy, other atomic.Int64 }

// count records err (a missing row is an answer, not a failure) and returns it.
func (e *DBErrors) count(err error) error {
	switch {
	case err == nil || errors.Is(err, sql.ErrNoRows):
	case isBusy(err):
		e.busy.Add(1)
	default:
		e.other.Add(1)
	}
	return err
}

// openStore opens the file the way the legacy backend does at every boot:
// sql.Open with no DSN pragmas (so no busy timeout: a locked file fails at
// once with SQLITE_BUSY), goose.Up, then journal_mode=DELETE and
// synchronous=FULL. A failed step's error is the legacy's log message; the
// caller exits with it (log.Fatal) as the legacy does.
func openStore(path string) (*Store, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, fmt.Errorf("Failed to open database: %v", err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("Failed to run migrations: %v", err)
	}
	// One Exec each on the pool, as the legacy does: journal_mode is stored in
	// the file; synchronous is per connection (FULL is also the default).
	if _, err := db.Exec("PRAGMA journal_mode=DELETE"); err != nil {
		db.Close()
		return nil, fmt.Errorf("Failed to set journal mode: %v", err)
	}
	if _, err := db.Exec("PRAGMA synchronous=FULL"); err != nil {
		db.Close()
		return nil, fmt.Errorf("Failed to set synchronous mode: %v", err)
	}
	return &Store{db: db}, nil
}

// migrate is the legacy's goose.Up over the embedded migrations: it creates
// goose_db_version when missing and applies 00001 (in a transaction) unless
// version 1 is recorded there -- as the Python side records it when it made
// the file first.
func migrate(db *sql.DB) error {
	goose.SetBaseFS(migrations)
	if err := goose.SetDialect("sqlite3"); err != nil {
		return err
	}
	return goose.Up(db, "migrations")
}

// isBusy says whether err is SQLite's "database is locked" (SQLITE_BUSY).
func isBusy(err error) bool {
	var coded interface{ Code() int }
	return err != nil && errors.As(err, &coded) && coded.Code()&0xff == 5
}

func (s *Store) Close() error { return s.db.Close() }

func (s *Store) HasUsers(ctx context.Context) (bool, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n > 0, s.errs.count(err)
}

func (s *Store) CreateUser(ctx context.Context, email, hash string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (email, password_hash) VALUES (?, ?)`, email, hash)
	return s.errs.count(err)
}

func (s *Store) PasswordHash(ctx context.Context, email string) (string, error) {
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE email = ?`, email).Scan(&h)
	return h, s.errs.count(err)
}

func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, email, created_at FROM users ORDER BY created_at DESC, id DESC`)
	if err != nil {
		return nil, s.errs.count(err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Email, &u.CreatedAt); err != nil {
			return nil, s.errs.count(err)
		}
		out = append(out, u)
	}
	return out, s.errs.count(rows.Err())
}

func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id)
	return s.errs.count(err)
}

func (s *Store) CreateAPIKey(ctx context.Context, id, key, name string) (APIKey, error) {
	var k APIKey
	err := s.db.QueryRowContext(ctx,
		`INSERT INTO api_keys (id, key, name) VALUES (?, ?, ?) RETURNING id, key, name, created_at`,
		id, key, name).Scan(&k.ID, &k.Key, &k.Name, &k.CreatedAt)
	return k, s.errs.count(err)
}

func (s *Store) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, key, name, created_at FROM api_keys ORDER BY created_at DESC, rowid DESC`)
	if err != nil {
		return nil, s.errs.count(err)
	}
	defer rows.Close()
	out := []APIKey{}
	for rows.Next() {
		var k APIKey
		if err := rows.Scan(&k.ID, &k.Key, &k.Name, &k.CreatedAt); err != nil {
			return nil, s.errs.count(err)
		}
		out = append(out, k)
	}
	return out, s.errs.count(rows.Err())
}

func (s *Store) GetAPIKey(ctx context.Context, key string) (APIKey, error) {
	var k APIKey
	err := s.db.QueryRowContext(ctx, `SELECT id, key, name, created_at FROM api_keys WHERE key = ? LIMIT 1`, key).
		Scan(&k.ID, &k.Key, &k.Name, &k.CreatedAt)
	return k, s.errs.count(err)
}

func (s *Store) DeleteAPIKey(ctx context.Context, key string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM api_keys WHERE key = ?`, key)
	return s.errs.count(err)
}
