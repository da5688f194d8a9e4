package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"
	gonanoid "github.com/matoous/go-nanoid/v2"
	"golang.org/x/crypto/bcrypt"
)

// ---- auth -----------------------------------------------------------------

type SigninRequest struct {
	Email    string `json:"email" validate:"required,email"`
	Password string `json:"password" validate:"required"`
}

type CreateUserRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Server) signIn(c echo.Context) error {
	var req SigninRequest
	if err := c.Bind(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	if err := c.Validate(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	hash, err := s.store.PasswordHash(c.Request().Context(), req.Email)
	if err != nil || bcrypt.CompareHashAndPassword([]byte(hash), []byte(req.Password)) != nil {
		return echo.NewHTTPError(http.StatusUnauthorized, "invalid credentials")
	}
	sess, err := session.Get(sessionName, c)
	if err != nil {
		log.Printf("failed to get session: %v", err)
		return echo.NewHTTPError(http.StatusInternalServerError, "failed to get session")
	}
	sess.Options = &sessions.Options{
		Path:     "/",
		MaxAge:   86400 * 30,
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteStrictMode,
	}
	if s.cfg.Env == "production" && s.cfg.ProdAuthDomain != "" {
		// net/http drops the leading dot when it writes the header, exactly
		// as it does for the legacy.
		sess.Options.Domain = "." + s.cfg.ProdAuthDomain
	}
	sess.Values["userEmail"] = req.Email
	if err := sess.Save(c.Request(), c.Response()); err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "failed to save session")
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "signed in"})
}

func (s *Server) signOut(c echo.Context) error {
	sess, err := session.Get(sessionName, c)
	if err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "failed to get session")
	}
	// The legacy's sign-out cookie: the session it *read*, re-encoded with a
	// fresh timestamp (so a signed-in request's cookie still holds userEmail
	// and would pass /auth-test for 30 days if a client kept it), expired,
	// Secure, SameSite=None, no HttpOnly. The legacy never clears the values;
	// the vectors' signout_set_cookie is empty only because it was minted
	// without a session.
	sess.Options = &sessions.Options{
		Path:     "/",
		MaxAge:   -1,
		Secure:   true,
		SameSite: http.SameSiteNoneMode,
	}
	if err := sess.Save(c.Request(), c.Response()); err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "failed to save session")
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "signed out"})
}

func (s *Server) authTest(c echo.Context) error {
	email, ok := userEmailFromSession(c)
	if !ok {
		return echo.NewHTTPError(http.StatusUnauthorized, "unauthorized")
	}
	return c.JSON(http.StatusOK, map[string]string{"userEmail": email})
}

// ---- users ----------------------------------------------------------------

func hashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	return string(h), err
}

func (s *Server) dbHasUsers(c echo.Context) error {
	exists, err := s.store.HasUsers(c.Request().Context())
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed to fetch user existence"})
	}
	return c.JSON(http.StatusOK, map[string]bool{"usersExist": exists})
}

func (s *Server) createFirstUser(c echo.Context) error {
	var req CreateUserRequest
	if err := c.Bind(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	ctx := c.Request().Context()
	exists, err := s.store.HasUsers(ctx)
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed check authorization for first user creation."})
	}
	if exists {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "Users already exist, cannot create first user."})
	}
	hash, err := hashPassword(req.Password)
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed to hash password"})
	}
	if err := s.store.CreateUser(ctx, req.Email, hash); err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed to create first user"})
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "First user created successfully"})
}

func isUniqueViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func (s *Server) createUser(c echo.Context) error {
	var req CreateUserRequest
	if err := c.Bind(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	hash, err := hashPassword(req.Password)
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed to hash password"})
	}
	if err := s.store.CreateUser(c.Request().Context(), req.Email, hash); err != nil {
		if isUniqueViolation(err) {
			return c.JSON(http.StatusConflict, map[string]string{"error": "A user with this email already exists"})
		}
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed to create user"})
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "User created successfully"})
}

func (s *Server) listUsers(c echo.Context) error {
	users, err := s.store.ListUsers(c.Request().Context())
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed to list users"})
	}
	return c.JSON(http.StatusOK, users)
}

func (s *Server) deleteUser(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "Invalid user ID format")
	}
	if err := s.store.DeleteUser(c.Request().Context(), id); err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "Failed to delete user"})
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "User deleted successfully"})
}

// seedUser creates "email:password" when the database has no user yet.
func seedUser(ctx context.Context, st *Store, spec string) error {
	email, pw, ok := strings.Cut(spec, ":")
	if !ok || email == "" {
		return fmt.Errorf("-seed-user wants email:password, got %q", spec)
	}
	exists, err := st.HasUsers(ctx)
	if err != nil || exists {
		return err
	}
	hash, err := hashPassword(pw)
	if err != nil {
		return err
	}
	return st.CreateUser(ctx, email, hash)
}

// ---- api keys -------------------------------------------------------------

type CreateAPIKeyRequest struct {
	Name string `json:"name" validate:"required"`
}

const keyAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func (s *Server) createAPIKey(c echo.Context) error {
	var req CreateAPIKeyRequest
	if err := c.Bind(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "Invalid request body: "+err.Error())
	}
	if err := c.Validate(&req); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "Validation failed: "+err.Error())
	}
	key, err := gonanoid.Generate(keyAlphabet, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "Failed to generate API key")
	}
	id, err := gonanoid.New()
	if err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "Failed to generate new ID")
	}
	k, err := s.store.CreateAPIKey(c.Request().Context(), id, key, req.Name)
	if err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "Failed to save API key")
	}
	return c.JSON(http.StatusCreated, k)
}

func (s *Server) listAPIKeys(c echo.Context) error {
	keys, err := s.store.ListAPIKeys(c.Request().Context())
	if err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "Failed to retrieve API keys")
	}
	return c.JSON(http.StatusOK, keys)
}

func (s *Server) deleteAPIKey(c echo.Context) error {
	key := c.Param("key")
	if key == "" {
		return echo.NewHTTPError(http.StatusBadRequest, "API key parameter is required")
	}
	ctx := c.Request().Context()
	if _, err := s.store.GetAPIKey(ctx, key); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return echo.NewHTTPError(http.StatusNotFound, "API key not found")
		}
		return echo.NewHTTPError(http.StatusInternalServerError, "Failed to delete API key")
	}
	if err := s.store.DeleteAPIKey(ctx, key); err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "Failed to delete API key")
	}
	return c.NoContent(http.StatusNoContent)
}

// ---- llm ------------------------------------------------------------------

// The legacy's schemas (package llm), with its type names: they appear in
// bind errors ("Go struct field GeminiRequest.contents ...").
type GeminiPart struct {
	Text string `json:"text"`
}

type GeminiContent struct {
	Role  string       `json:"role,omitempty"`
	Parts []GeminiPart `json:"parts"`
}

type GenerationConfig struct {
	StopSequences    []string `json:"stopSequences,omitempty"`
	ResponseMimeType string   `json:"responseMimeType,omitempty"`
	Temperature      float64  `json:"temperature,omitempty"`
	TopP             float64  `json:"topP,omitempty"`
	TopK             int      `json:"topK,omitempty"`
}

type SystemInstruction struct {
	Parts []GeminiPart `json:"parts"`
}

// GeminiRequest is the legacy's request schema; it is re-marshalled (model
// included) and sent as the provider body, so unknown fields are dropped.
type GeminiRequest struct {
	Model             string             `json:"model,omitempty"`
	Contents          []GeminiContent    `json:"contents"`
	GenerationConfig  *GenerationConfig  `json:"generationConfig,omitempty"`
	SystemInstruction *SystemInstruction `json:"system_instruction,omitempty"`
}

func (s *Server) llmGenerate(c echo.Context) error {
	// The legacy binds first and answers the binder's own text, and checks the
	// key only after: a bad body is a 400 whether or not a key is set.
	var req GeminiRequest
	if err := c.Bind(&req); err != nil {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": err.Error()})
	}
	if s.cfg.GeminiAPIKey == "" {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": "GEMINI_API_KEY environment variable is not set"})
	}
	if req.Model == "" {
		req.Model = "gemini-2.5-flash"
	}
	model := req.Model
	body, err := json.Marshal(req)
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
	url := strings.TrimRight(s.cfg.GeminiBaseURL, "/") + "/v1beta/models/" + model + ":generateContent"
	out, err := http.NewRequestWithContext(c.Request().Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
	out.Header.Set("Content-Type", "application/json")
	out.Header.Set("x-goog-api-key", s.cfg.GeminiAPIKey)
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return c.JSON(http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
	// The legacy answers 200 with the provider's bytes whatever its status.
	return c.JSONBlob(http.StatusOK, raw)
}
