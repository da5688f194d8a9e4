package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The boot sequence the legacy runs on every start: goose.Up, then
// journal_mode=DELETE and synchronous=FULL on a connection with no busy timeout.

func rawDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func gooseVersions(t *testing.T, db *sql.DB) [][2]int64 {
	t.Helper()
	rows, err := db.Query(`SELECT version_id, is_applied FROM goose_db_version ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][2]int64
	for rows.Next() {
		var v [2]int64
		if err := rows.Scan(&v[0], &v[1]); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func journalMode(t *testing.T, db *sql.DB) string {
	t.Helper()
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	return mode
}

func TestBootMigratesAFreshFileAndRecordsGoose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	for boot := 0; boot < 2; boot++ { // the second boot finds version 1 and skips it
		st, err := openStore(path)
		if err != nil {
			t.Fatalf("boot %d: %v", boot, err)
		}
		st.Close()
	}
	db := rawDB(t, path)
	if got, want := gooseVersions(t, db), [][2]int64{{0, 1}, {1, 1}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("goose_db_version = %v, want %v", got, want)
	}
	if m := journalMode(t, db); m != "delete" {
		t.Fatalf("journal_mode = %q", m)
	}
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name IN ('users','api_keys','poller_state','idx_users_email')`).Scan(&n)
	if n != 4 {
		t.Fatalf("%d of the migration's 4 objects exist", n)
	}
}

// The Python side creates the schema itself when it opens the file first, and
// records versions 0 and 1 as goose would: the legacy then skips 00001.
func TestBootSkipsAMigrationRecordedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := rawDB(t, path)
	raw, err := migrations.ReadFile("migrations/00001_initial_schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	up := strings.Split(string(raw), "-- +goose Down")[0]
	if _, err := db.Exec(up + `;
CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL,
  is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));
INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, 1), (1, 1);
INSERT INTO users (email, password_hash) VALUES ('py@example.com', 'h');`); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(path)
	if err != nil {
		t.Fatal(err) // "table users already exists" if goose did not skip 00001
	}
	defer st.Close()
	if ok, err := st.HasUsers(context.Background()); err != nil || !ok {
		t.Fatalf("HasUsers = %v, %v", ok, err)
	}
	if got := gooseVersions(t, db); len(got) != 2 {
		t.Fatalf("goose_db_version = %v", got)
	}
}

// A process that put the file in WAL mode and keeps it open stops the legacy
// from booting, with the legacy's exact message (seen on the real backend).
func TestBootFailsWhileAnotherProcessHoldsTheFileInWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	st, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	holder := rawDB(t, path+"?_pragma=journal_mode(WAL)")
	conn, err := holder.Conn(context.Background()) // an open connection, as a pool keeps one
	if err != nil {
		t.Fatal(err)
	}
	if m := journalMode(t, holder); m != "wal" {
		t.Fatalf("holder journal_mode = %q", m)
	}

	_, err = openStore(path)
	want := "Failed to set journal mode: database is locked (5) (SQLITE_BUSY)"
	if err == nil || err.Error() != want {
		t.Fatalf("boot error = %v, want %q", err, want)
	}

	conn.Close()
	holder.Close()
	st, err = openStore(path) // nobody holds it: DELETE is restored
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if m := journalMode(t, st.db); m != "delete" {
		t.Fatalf("journal_mode after boot = %q", m)
	}
}

// No busy timeout: a write fails at once while another connection holds the
// write lock, and is counted for /_standin/db-errors.
func TestWritesFailAtOnceWhileLockedAndAreCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	st, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other := rawDB(t, path)
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO users (email, password_hash) VALUES ('lock@example.com', 'h')`); err != nil {
		t.Fatal(err)
	}
	err = st.CreateUser(context.Background(), "go@example.com", "h")
	if !isBusy(err) {
		t.Fatalf("CreateUser while locked: %v, want SQLITE_BUSY", err)
	}
	tx.Rollback()
	if err := st.CreateUser(context.Background(), "go@example.com", "h"); err != nil {
		t.Fatal(err)
	}
	if b, o := st.errs.busy.Load(), st.errs.other.Load(); b != 1 || o != 0 {
		t.Fatalf("counted busy=%d other=%d, want 1 and 0", b, o)
	}
}
