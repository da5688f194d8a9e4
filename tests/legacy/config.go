package main

import (
	"errors"
	"flag"
	"os"
	"strings"
)

// Config is everything the stand-in reads from flags and the environment.
// Flags win over env vars; env vars win over defaults.
type Config struct {
	Addr           string
	SQLitePath     string
	SpansJSON      string
	SessionSecret  string
	AllowOrigins   []string
	Env            string
	ProdAuthDomain string
	GeminiAPIKey   string
	GeminiBaseURL  string
	SeedUser       string
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// parseOrigins splits JUNJO_ALLOW_ORIGINS the way the legacy does: a comma
// list, blanks dropped. An empty list means "reflect any origin".
func parseOrigins(raw string) []string {
	var out []string
	for _, o := range strings.Split(raw, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

func loadConfig(args []string) (Config, error) {
	fs := flag.NewFlagSet("legacy-standin", flag.ContinueOnError)
	var c Config
	fs.StringVar(&c.Addr, "addr", envOr("STANDIN_ADDR", "127.0.0.1:1323"), "listen address")
	fs.StringVar(&c.SQLitePath, "sqlite", envOr("JUNJO_SQLITE_PATH", "standin.db"), "SQLite file (schema created if missing)")
	fs.StringVar(&c.SpansJSON, "spans-json", envOr("STANDIN_SPANS_JSON", ""), "JSON fixture of span rows for /otel (replaces DuckDB)")
	fs.StringVar(&c.SpansJSON, "duckdb", envOr("STANDIN_SPANS_JSON", ""), "alias of -spans-json (there is no DuckDB here)")
	fs.StringVar(&c.GeminiBaseURL, "gemini-base-url", envOr("GEMINI_BASE_URL", "https://generativelanguage.googleapis.com"), "Gemini API base URL")
	fs.StringVar(&c.SeedUser, "seed-user", "", "email:password of a user created at boot when no user exists")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.SessionSecret = os.Getenv("JUNJO_SESSION_SECRET")
	c.AllowOrigins = parseOrigins(os.Getenv("JUNJO_ALLOW_ORIGINS"))
	c.Env = os.Getenv("JUNJO_ENV")
	c.ProdAuthDomain = os.Getenv("JUNJO_PROD_AUTH_DOMAIN")
	c.GeminiAPIKey = os.Getenv("GEMINI_API_KEY")
	if c.SessionSecret == "" {
		return c, errors.New("JUNJO_SESSION_SECRET is required (its raw bytes are the session HMAC key)")
	}
	return c, nil
}
