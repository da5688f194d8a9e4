package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// The stand-in serves /otel from a JSON fixture instead of DuckDB: an array
// of span row objects with the `spans` columns. Rows are normalised once at
// load time into the shape the legacy serves (Go map -> sorted keys, JSON
// columns as objects, timestamps in UTC RFC3339Nano at µs precision).

var spanColumns = []string{
	"trace_id", "span_id", "parent_span_id", "service_name", "name", "kind",
	"start_time", "end_time", "status_code", "status_message",
	"attributes_json", "events_json", "links_json", "trace_flags", "trace_state",
	"junjo_id", "junjo_parent_id", "junjo_span_type",
	"junjo_wf_state_start", "junjo_wf_state_end", "junjo_wf_graph_structure",
	"junjo_wf_store_id",
}

var jsonColumns = map[string]bool{
	"attributes_json": true, "events_json": true, "links_json": true,
	"junjo_wf_state_start": true, "junjo_wf_state_end": true, "junjo_wf_graph_structure": true,
}

type spanRow struct {
	fields map[string]interface{}
	start  time.Time
}

func (r spanRow) str(col string) (string, bool) {
	s, ok := r.fields[col].(string)
	return s, ok
}

type SpanStore struct{ rows []spanRow }

func loadSpans(path string) (*SpanStore, error) {
	st := &SpanStore{}
	if path == "" {
		return st, nil
	}
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(raw)) == "" {
		return st, nil
	}
	var in []map[string]interface{}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("spans fixture %s: %w", path, err)
	}
	for i, m := range in {
		row, err := normaliseRow(m)
		if err != nil {
			return nil, fmt.Errorf("spans fixture %s row %d: %w", path, i, err)
		}
		st.rows = append(st.rows, row)
	}
	return st, nil
}

func formatTS(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
}

func parseTS(v interface{}) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Unix(0, 0).UTC(), nil
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("bad timestamp %q", x)
	case float64: // unix nanoseconds
		return time.Unix(0, int64(x)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("bad timestamp %v", v)
}

func normaliseRow(m map[string]interface{}) (spanRow, error) {
	row := spanRow{fields: map[string]interface{}{}}
	for _, col := range spanColumns {
		v := m[col]
		switch {
		case col == "start_time" || col == "end_time":
			t, err := parseTS(v)
			if err != nil {
				return row, err
			}
			if col == "start_time" {
				row.start = t
			}
			v = formatTS(t)
		case jsonColumns[col]:
			// Accept JSON text too; go-duckdb hands back parsed values.
			if s, ok := v.(string); ok {
				var parsed interface{}
				if json.Unmarshal([]byte(s), &parsed) == nil {
					v = parsed
				} else {
					v = nil
				}
			}
		}
		row.fields[col] = v
	}
	return row, nil
}

func (st *SpanStore) filter(keep func(spanRow) bool) []spanRow {
	var out []spanRow
	for _, r := range st.rows {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func newestFirst(rows []spanRow, limit int) []map[string]interface{} {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].start.After(rows[j].start) })
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	out := make([]map[string]interface{}, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.fields)
	}
	return out
}

func missingParam(c echo.Context, name string) error {
	return c.JSON(http.StatusBadRequest, map[string]string{"error": name + " parameter is required"})
}

func isRoot(r spanRow) bool { return r.fields["parent_span_id"] == nil }

func (s *Server) spanServiceNames(c echo.Context) error {
	seen := map[string]bool{}
	names := []string{}
	for _, r := range s.spans.rows {
		if n, ok := r.str("service_name"); ok && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return c.JSON(http.StatusOK, names)
}

func (s *Server) rootSpans(c echo.Context) error {
	svc := c.Param("serviceName")
	if svc == "" {
		return missingParam(c, "serviceName")
	}
	rows := s.spans.filter(func(r spanRow) bool {
		n, _ := r.str("service_name")
		return n == svc && isRoot(r)
	})
	return c.JSON(http.StatusOK, newestFirst(rows, 500))
}

// llmTraces: traces holding a span whose attributes_json has a top-level key
// "openinference.span.kind" whose ->> text is exactly "LLM" (a JSON string).
func (st *SpanStore) llmTraces() map[string]bool {
	out := map[string]bool{}
	for _, r := range st.rows {
		attrs, ok := r.fields["attributes_json"].(map[string]interface{})
		if !ok {
			continue
		}
		if v, ok := attrs["openinference.span.kind"].(string); ok && v == "LLM" {
			t, _ := r.str("trace_id")
			out[t] = true
		}
	}
	return out
}

func (s *Server) rootSpansFiltered(c echo.Context) error {
	svc := c.Param("serviceName")
	if svc == "" {
		return missingParam(c, "serviceName")
	}
	traces := s.spans.llmTraces()
	rows := s.spans.filter(func(r spanRow) bool {
		n, _ := r.str("service_name")
		t, _ := r.str("trace_id")
		return n == svc && isRoot(r) && traces[t]
	})
	return c.JSON(http.StatusOK, newestFirst(rows, 500))
}

func (s *Server) nestedSpans(c echo.Context) error {
	trace := c.Param("traceId")
	if trace == "" {
		return missingParam(c, "traceId")
	}
	rows := s.spans.filter(func(r spanRow) bool {
		t, _ := r.str("trace_id")
		return t == trace
	})
	return c.JSON(http.StatusOK, newestFirst(rows, 0))
}

func (s *Server) oneSpan(c echo.Context) error {
	trace, span := c.Param("traceId"), c.Param("spanId")
	if trace == "" {
		return missingParam(c, "traceId")
	}
	if span == "" {
		return missingParam(c, "spanId")
	}
	for _, r := range s.spans.rows {
		t, _ := r.str("trace_id")
		sp, _ := r.str("span_id")
		if t == trace && sp == span {
			return c.JSON(http.StatusOK, r.fields)
		}
	}
	return c.JSON(http.StatusOK, nil)
}

func (s *Server) workflowSpans(c echo.Context) error {
	svc := c.Param("serviceName")
	if svc == "" {
		return missingParam(c, "serviceName")
	}
	rows := s.spans.filter(func(r spanRow) bool {
		n, _ := r.str("service_name")
		ty, _ := r.str("junjo_span_type")
		return n == svc && ty == "workflow"
	})
	return c.JSON(http.StatusOK, newestFirst(rows, 0))
}
