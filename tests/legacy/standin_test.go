package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/securecookie"
	"github.com/labstack/echo/v4"
)

type vectorFile struct {
	About string `json:"about"`
	Mint  []struct {
		Secret      string `json:"secret"`
		Email       string `json:"email"`
		Timestamp   int64  `json:"timestamp"`
		SetCookie   string `json:"set_cookie"`
		CookieValue string `json:"cookie_value"`
	} `json:"mint"`
	SignoutSetCookie string `json:"signout_set_cookie"`
}

// The vectors live in the shared/ folder beside the repo clone; tests/vectors
// holds a committed copy for clones without it.
func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	rel := filepath.Join("vectors", "gorilla_session_cookies.json")
	var candidates []string
	if d := os.Getenv("SHARED_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, rel))
	}
	candidates = append(candidates, filepath.Join("..", "..", "..", "shared", rel), filepath.Join("..", rel))
	for _, p := range candidates {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var v vectorFile
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return v
	}
	t.Fatalf("gorilla_session_cookies.json not found in %v (set SHARED_DIR to the shared/ folder)", candidates)
	return vectorFile{}
}

// decodeSession runs the server's own store (newCookieStore) with
// securecookie's 30-day age check switched off: the vectors were minted at a
// fixed timestamp and must keep decoding after it.
func decodeSession(t *testing.T, secret, value string) (map[interface{}]interface{}, error) {
	t.Helper()
	store := newCookieStore(secret)
	for _, c := range store.Codecs {
		c.(*securecookie.SecureCookie).MaxAge(0)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Cookie", sessionName+"="+value)
	sess, err := store.Get(req, sessionName)
	if err != nil {
		return nil, err
	}
	return sess.Values, nil
}

func TestGorillaVectorsDecode(t *testing.T) {
	v := loadVectors(t)
	if len(v.Mint) == 0 {
		t.Fatal("no vectors")
	}
	for _, m := range v.Mint {
		values, err := decodeSession(t, m.Secret, m.CookieValue)
		if err != nil {
			t.Errorf("%s: decode: %v", m.Email, err)
			continue
		}
		if got, _ := values["userEmail"].(string); got != m.Email || len(values) != 1 {
			t.Errorf("decoded %v, want userEmail=%q only", values, m.Email)
		}
		if !strings.HasPrefix(m.SetCookie, "session="+m.CookieValue+"; ") {
			t.Errorf("set_cookie does not carry cookie_value for %s", m.Email)
		}
		// A wrong secret and a flipped MAC byte must both be rejected.
		if _, err := decodeSession(t, m.Secret+"x", m.CookieValue); err == nil {
			t.Errorf("%s: decoded with the wrong secret", m.Email)
		}
		tampered := []byte(m.CookieValue)
		tampered[len(tampered)/2] ^= 1
		if _, err := decodeSession(t, m.Secret, string(tampered)); err == nil {
			t.Errorf("%s: decoded a tampered cookie", m.Email)
		}
	}
	// The sign-out cookie holds an empty session.
	so := strings.TrimPrefix(strings.SplitN(v.SignoutSetCookie, ";", 2)[0], "session=")
	values, err := decodeSession(t, "dev-secret", so)
	if err != nil || len(values) != 0 {
		t.Errorf("signout cookie: %v %v", values, err)
	}
}

// ---- routes over httptest --------------------------------------------------

type testEnv struct {
	t   *testing.T
	srv *Server
	e   *echo.Echo
}

func newTestEnv(t *testing.T, mut func(*Config)) *testEnv {
	t.Helper()
	cfg := Config{SessionSecret: "dev-secret", GeminiBaseURL: "http://127.0.0.1:1"}
	if mut != nil {
		mut(&cfg)
	}
	st, err := openStore(filepath.Join(t.TempDir(), "app.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := seedUser(context.Background(), st, "ada@example.com:pw"); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, store: st, spans: &SpanStore{}, stats: &Stats{}}
	return &testEnv{t: t, srv: s, e: newEcho(s)}
}

func (te *testEnv) do(method, path, body string, headers ...string) *httptest.ResponseRecorder {
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	te.e.ServeHTTP(rec, req)
	return rec
}

func jsonBody(t *testing.T, rec *httptest.ResponseRecorder) map[string]interface{} {
	t.Helper()
	var m map[string]interface{}
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return m
}

func setCookie(rec *httptest.ResponseRecorder, name string) string {
	for _, c := range rec.Header().Values("Set-Cookie") {
		if strings.HasPrefix(c, name+"=") {
			return c
		}
	}
	return ""
}

func TestPing(t *testing.T) {
	te := newTestEnv(t, nil)
	rec := te.do("GET", "/ping", "")
	if rec.Code != 200 || rec.Body.String() != "pong" {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
}

func TestCSRFBeforeAuth(t *testing.T) {
	te := newTestEnv(t, nil)
	rec := te.do("POST", "/users", `{"email":"x@y.z","password":"p"}`)
	if rec.Code != 400 || jsonBody(t, rec)["message"] != "missing value in cookies" {
		t.Fatalf("got %d %s", rec.Code, rec.Body.String())
	}
	rec = te.do("POST", "/users", `{}`, "Cookie", "csrf=anything")
	if rec.Code != 401 || jsonBody(t, rec)["message"] != "Unauthorized: No valid session" {
		t.Fatalf("got %d %s", rec.Code, rec.Body.String())
	}
	c := setCookie(rec, "csrf")
	if !strings.HasPrefix(c, "csrf=anything; Expires=") || !strings.HasSuffix(c, "; HttpOnly; Secure; SameSite=Strict") || strings.Contains(c, "Path=") {
		t.Errorf("csrf cookie on 401: %q", c)
	}
	if vary := strings.Join(rec.Header().Values("Vary"), ","); vary != "Origin,Cookie" {
		t.Errorf("Vary: %q", vary)
	}
}

func TestUnauthorizedShape(t *testing.T) {
	te := newTestEnv(t, nil)
	for _, p := range []string{"/users", "/auth-test", "/no/such/path", "/otel/span-service-names"} {
		rec := te.do("GET", p, "")
		if rec.Code != 401 || rec.Body.String() != "{\"message\":\"Unauthorized: No valid session\"}\n" {
			t.Errorf("%s: %d %q", p, rec.Code, rec.Body.String())
		}
	}
	// A session cookie in another format is no session.
	rec := te.do("GET", "/auth-test", "", "Cookie", "session=garbage")
	if rec.Code != 401 {
		t.Errorf("garbage session: %d", rec.Code)
	}
}

var sessionCookieRE = regexp.MustCompile(`^session=([A-Za-z0-9_=-]+); Path=/; Expires=[^;]+ GMT; Max-Age=2592000; HttpOnly; Secure; SameSite=Strict$`)

func TestSignInCookie(t *testing.T) {
	te := newTestEnv(t, nil)
	rec := te.do("POST", "/sign-in", `{"email":"ada@example.com","password":"pw"}`)
	if rec.Code != 200 || jsonBody(t, rec)["message"] != "signed in" {
		t.Fatalf("got %d %s", rec.Code, rec.Body.String())
	}
	c := setCookie(rec, "session")
	m := sessionCookieRE.FindStringSubmatch(c)
	if m == nil {
		t.Fatalf("session cookie %q", c)
	}
	values, err := decodeSession(t, "dev-secret", m[1])
	if err != nil || values["userEmail"] != "ada@example.com" {
		t.Fatalf("decode: %v %v", values, err)
	}
	// Same attributes as the gorilla-minted vector.
	v := loadVectors(t)
	strip := func(s string) string {
		s = regexp.MustCompile(`^session=[^;]*`).ReplaceAllString(s, "session=V")
		return regexp.MustCompile(`Expires=[^;]*`).ReplaceAllString(s, "Expires=E")
	}
	if strip(c) != strip(v.Mint[0].SetCookie) {
		t.Errorf("sign-in cookie %q vs vector %q", strip(c), strip(v.Mint[0].SetCookie))
	}
	// The session works, and sign-out answers the vector's expiry cookie.
	cookie := "session=" + m[1]
	rec = te.do("GET", "/auth-test", "", "Cookie", cookie)
	if rec.Code != 200 || jsonBody(t, rec)["userEmail"] != "ada@example.com" {
		t.Fatalf("auth-test: %d %s", rec.Code, rec.Body.String())
	}
	rec = te.do("POST", "/sign-out", "", "Cookie", cookie+"; csrf=t")
	if rec.Code != 200 || jsonBody(t, rec)["message"] != "signed out" {
		t.Fatalf("sign-out: %d %s", rec.Code, rec.Body.String())
	}
	so := setCookie(rec, "session")
	if strip(so) != strip(v.SignoutSetCookie) || !strings.Contains(so, "Expires=Thu, 01 Jan 1970 00:00:01 GMT") {
		t.Errorf("sign-out cookie %q vs vector %q", so, v.SignoutSetCookie)
	}
	// Its value is the session that was read, re-encoded (the legacy never
	// clears it): it still holds userEmail and passes /auth-test if kept.
	out := regexp.MustCompile(`^session=([A-Za-z0-9_=-]+);`).FindStringSubmatch(so)
	if out == nil {
		t.Fatalf("sign-out cookie %q", so)
	}
	values, err = decodeSession(t, "dev-secret", out[1])
	if err != nil || values["userEmail"] != "ada@example.com" || len(values) != 1 {
		t.Errorf("sign-out value decodes to %v %v, want the signed-in session", values, err)
	}
	rec = te.do("GET", "/auth-test", "", "Cookie", "session="+out[1])
	if rec.Code != 200 || jsonBody(t, rec)["userEmail"] != "ada@example.com" {
		t.Errorf("kept sign-out value on /auth-test: %d %s", rec.Code, rec.Body.String())
	}
}

func TestSignInErrors(t *testing.T) {
	te := newTestEnv(t, nil)
	rec := te.do("POST", "/sign-in", `{"email":"ada@example.com","password":"nope"}`)
	if rec.Code != 401 || jsonBody(t, rec)["message"] != "invalid credentials" {
		t.Errorf("bad password: %d %s", rec.Code, rec.Body.String())
	}
	rec = te.do("POST", "/sign-in", `{"email":"not-an-email","password":"pw"}`)
	if rec.Code != 400 || jsonBody(t, rec)["message"] == nil {
		t.Errorf("bad email: %d %s", rec.Code, rec.Body.String())
	}
	rec = te.do("POST", "/sign-in", `{"email":"ada@example.com","password":"pw"}`, "Cookie", "session=garbage")
	if rec.Code != 500 || jsonBody(t, rec)["message"] != "failed to get session" {
		t.Errorf("undecodable session: %d %s", rec.Code, rec.Body.String())
	}
}

func TestSignInProductionDomain(t *testing.T) {
	te := newTestEnv(t, func(c *Config) { c.Env = "production"; c.ProdAuthDomain = "example.com" })
	rec := te.do("POST", "/sign-in", `{"email":"ada@example.com","password":"pw"}`)
	// Options.Domain is ".example.com"; net/http writes it without the dot.
	if c := setCookie(rec, "session"); !strings.Contains(c, "; Path=/; Domain=example.com; Expires=") {
		t.Errorf("production cookie %q", c)
	}
}

func TestCORSPreflight(t *testing.T) {
	te := newTestEnv(t, func(c *Config) { c.AllowOrigins = []string{"http://localhost:5151"} })
	rec := te.do("OPTIONS", "/users", "", "Origin", "http://localhost:5151", "Access-Control-Request-Method", "POST")
	h := rec.Header()
	if rec.Code != 204 || h.Get("Access-Control-Allow-Origin") != "http://localhost:5151" ||
		h.Get("Access-Control-Allow-Credentials") != "true" ||
		h.Get("Access-Control-Allow-Methods") != "GET,POST,PUT,DELETE,OPTIONS" ||
		h.Get("Access-Control-Allow-Headers") != "Origin,Content-Type,Accept,X-CSRF-Token" {
		t.Errorf("preflight: %d %v", rec.Code, h)
	}
	rec = te.do("OPTIONS", "/users", "", "Origin", "http://evil.example", "Access-Control-Request-Method", "POST")
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed preflight: %d %v", rec.Code, rec.Header())
	}
}

// /llm/generate binds before it checks GEMINI_API_KEY, and a bind failure
// answers the binder's own err.Error() text (contract, Routes).
func TestLLMGenerateBindsBeforeTheKeyCheck(t *testing.T) {
	te := newTestEnv(t, nil) // no GEMINI_API_KEY
	cookie := te.signedIn()
	cases := []struct{ body, want string }{
		{`{"contents":`, `{"error":"code=400, message=unexpected EOF, internal=unexpected EOF"}`},
		{`{"model":5}`, `{"error":"code=400, message=Unmarshal type error: expected=string, got=number, field=model, offset=10, internal=json: cannot unmarshal number into Go struct field GeminiRequest.model of type string"}`},
		{`{}`, `{"error":"GEMINI_API_KEY environment variable is not set"}`},
	}
	for _, tc := range cases {
		rec := te.do("POST", "/llm/generate", tc.body, "Cookie", cookie)
		if got := strings.TrimSuffix(rec.Body.String(), "\n"); got != tc.want {
			t.Errorf("%s: %d %s, want %s", tc.body, rec.Code, got, tc.want)
		}
	}
}

// signedIn signs the seeded user in and returns a Cookie header value.
func (te *testEnv) signedIn() string {
	te.t.Helper()
	rec := te.do("POST", "/sign-in", `{"email":"ada@example.com","password":"pw"}`)
	m := sessionCookieRE.FindStringSubmatch(setCookie(rec, "session"))
	if m == nil {
		te.t.Fatalf("sign-in: %d %s", rec.Code, rec.Body.String())
	}
	return "session=" + m[1] + "; csrf=t"
}

// Echo routes on the raw path when Go keeps URL.RawPath, i.e. when the
// request's escaping differs from Go's own (upper-case hex): a param written
// with lower-case escapes stays escaped and finds nothing (contract, Routes).
func TestOtelParamsStayEscapedWhenTheEscapingIsNotGos(t *testing.T) {
	te := newTestEnv(t, nil)
	fixture := filepath.Join(t.TempDir(), "spans.json")
	row := `[{"trace_id":"t1","span_id":"s1","parent_span_id":null,"service_name":"\u2713 svc",` +
		`"junjo_span_type":"workflow","start_time":"2025-01-02T03:04:05Z","end_time":"2025-01-02T03:04:06Z"}]`
	if err := os.WriteFile(fixture, []byte(row), 0o600); err != nil {
		t.Fatal(err)
	}
	spans, err := loadSpans(fixture)
	if err != nil {
		t.Fatal(err)
	}
	te.srv.spans = spans
	cookie := te.signedIn()
	for path, rows := range map[string]int{
		"/otel/service/%E2%9C%93%20svc/root-spans": 1, // Go's own escaping: decoded
		"/otel/service/%e2%9c%93%20svc/root-spans": 0, // lower-case hex: raw text
		"/otel/spans/type/workflow/%E2%9C%93%20svc": 1,
		"/otel/spans/type/workflow/%e2%9c%93%20svc": 0,
	} {
		rec := te.do("GET", path, "", "Cookie", cookie)
		var got []interface{}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil || len(got) != rows {
			t.Errorf("%s: %d %s, want %d row(s)", path, rec.Code, rec.Body.String(), rows)
		}
	}
}
