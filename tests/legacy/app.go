package main

import (
	"net/http"
	"strings"

	"github.com/go-playground/validator/v10"
	"github.com/gorilla/sessions"
	"github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

const sessionName = "session"

// Routes that pass the auth middleware without a session (matched on the
// route template, c.Path(), as the legacy does).
var publicRoutes = map[string]bool{
	"/ping":                    true,
	"/sign-in":                 true,
	"/csrf":                    true,
	"/users/db-has-users":      true,
	"/users/create-first-user": true,
}

const probePrefix = "/_standin/"

func isProbe(c echo.Context) bool { return strings.HasPrefix(c.Path(), probePrefix) }

type customValidator struct{ v *validator.Validate }

func (cv *customValidator) Validate(i interface{}) error { return cv.v.Struct(i) }

// Server holds what the handlers need.
type Server struct {
	cfg   Config
	store *Store
	spans *SpanStore
	stats *Stats
}

// newCookieStore is the legacy's store: the secret's raw bytes as the HMAC
// key, no encryption key.
func newCookieStore(secret string) *sessions.CookieStore {
	return sessions.NewCookieStore([]byte(secret))
}

// newEcho wires the middleware chain in the legacy's order:
// CORS (Pre) -> session -> CSRF -> auth -> route.
func newEcho(s *Server) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Validator = &customValidator{v: validator.New()}

	// Stand-in bookkeeping only; it never changes a response.
	e.Pre(s.stats.middleware)

	e.Pre(middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOriginFunc: func(origin string) (bool, error) {
			if len(s.cfg.AllowOrigins) == 0 {
				return true, nil
			}
			for _, o := range s.cfg.AllowOrigins {
				if o == origin {
					return true, nil
				}
			}
			return false, nil
		},
		AllowCredentials: true,
		AllowMethods:     []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions},
		AllowHeaders:     []string{echo.HeaderOrigin, echo.HeaderContentType, echo.HeaderAccept, "X-CSRF-Token"},
	}))
	e.Use(middleware.Recover())
	e.Use(session.Middleware(newCookieStore(s.cfg.SessionSecret)))
	e.Use(middleware.CSRFWithConfig(middleware.CSRFConfig{
		Skipper: func(c echo.Context) bool {
			return c.Request().Method == http.MethodOptions || c.Path() == "/sign-in" || isProbe(c)
		},
		TokenLookup:    "header:X-CSRF-Token,cookie:csrf",
		CookieName:     "csrf",
		CookieSecure:   true,
		CookieHTTPOnly: true,
		CookieSameSite: http.SameSiteStrictMode,
		ContextKey:     "csrf",
	}))
	e.Use(authMiddleware)

	e.GET("/ping", func(c echo.Context) error { return c.String(http.StatusOK, "pong") })

	e.POST("/sign-in", s.signIn)
	e.POST("/sign-out", s.signOut)
	e.GET("/auth-test", s.authTest)
	e.GET("/csrf", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"csrfToken": c.Get("csrf").(string)})
	})

	e.GET("/users/db-has-users", s.dbHasUsers)
	e.POST("/users/create-first-user", s.createFirstUser)
	e.POST("/users", s.createUser)
	e.GET("/users", s.listUsers)
	e.DELETE("/users/:id", s.deleteUser)

	e.POST("/api_keys", s.createAPIKey)
	e.GET("/api_keys", s.listAPIKeys)
	e.DELETE("/api_keys/:key", s.deleteAPIKey)

	e.GET("/otel/span-service-names", s.spanServiceNames)
	e.GET("/otel/service/:serviceName/root-spans", s.rootSpans)
	e.GET("/otel/service/:serviceName/root-spans-filtered", s.rootSpansFiltered)
	e.GET("/otel/trace/:traceId/nested-spans", s.nestedSpans)
	e.GET("/otel/trace/:traceId/span/:spanId", s.oneSpan)
	e.GET("/otel/spans/type/workflow/:serviceName", s.workflowSpans)

	e.POST("/llm/generate", s.llmGenerate)

	registerProbes(e, s)
	return e
}

// userEmailFromSession mirrors the legacy's helper: a decodable session
// cookie whose values hold a string "userEmail".
func userEmailFromSession(c echo.Context) (string, bool) {
	sess, err := session.Get(sessionName, c)
	if err != nil {
		return "", false
	}
	email, ok := sess.Values["userEmail"].(string)
	return email, ok
}

func authMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if publicRoutes[c.Path()] || isProbe(c) {
			return next(c)
		}
		email, ok := userEmailFromSession(c)
		if !ok {
			return echo.NewHTTPError(http.StatusUnauthorized, "Unauthorized: No valid session")
		}
		c.Set("userEmail", email)
		return next(c)
	}
}
