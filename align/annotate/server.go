package annotate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/jsonl"
)

//go:embed assets/index.html assets/app.js assets/app.css
var assets embed.FS

// Criteria are the rubric's criteria (--rubric), the design document's
// four, scored 1–5 for each response.
var Criteria = []string{"tone", "accuracy", "helpfulness", "safety"}

// Defaults of ServeConfig.
const (
	DefaultAddr    = "127.0.0.1:8080"
	DefaultLease   = 10 * time.Minute
	DefaultMaxBody = 64 << 10
	MaxReason      = 4000 // bytes of a label's free-text reason
	DefaultName    = "you"
)

// ServeConfig configures Serve.
type ServeConfig struct {
	Items  []Item
	Labels string // labels file, appended (created if missing)
	Addr   string // listen address; "" is DefaultAddr

	// Annotators are the names given with --annotators; nil means one
	// annotator, DefaultName, which is allowed on a loopback address only.
	Annotators []string
	// Tokens maps every annotator to its secret (see LoadTokens).
	Tokens map[string]string

	PerItem int           // different annotators per item; default 1
	Rubric  bool          // ask for 1–5 scores on Criteria
	Lease   time.Duration // an item handed out stays reserved this long without activity; default DefaultLease
	MaxBody int64         // request body limit; default DefaultMaxBody

	Log io.Writer        // one line at start and at stop; nil: none
	Now func() time.Time // nil: time.Now
}

// Server is the labelling server. Its state is the labels file replayed:
// what each annotator has labelled, how many standing labels each item
// has, and (in memory only) which item each annotator holds.
type Server struct {
	cfg   ServeConfig
	items []Item
	byID  map[string]int
	store *store

	mu        sync.Mutex
	count     []int      // standing labels (not skips) per item
	leases    [][]*lease // annotators holding each item
	ann       map[string]*annotator
	firstOpen int // items before it all have PerItem labels
	complete  int // items with PerItem labels or more
	total     int // standing labels, skips included
	broken    error
	session   int // labels recorded by this process

	loopback bool
}

type annotator struct {
	name    string
	hash    [32]byte       // SHA-256 of the token
	seen    map[int]string // item -> standing choice (skips included)
	seq     map[int]int64  // item -> sequence number of its standing label in this process
	history []int          // items of the standing labels, in order (undo pops)
	lease   *lease
	times   []time.Time // this process's label times, for the rate on the page
	started time.Time   // first request in this process
}

type lease struct {
	item    int
	who     *annotator
	at      time.Time // handed out
	touched time.Time // last seen in a request
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// CheckNames checks annotator names: 1–64 letters, digits, '_', '.', '-'
// (starting with a letter or digit), no repeats.
func CheckNames(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if !nameRE.MatchString(n) {
			return fmt.Errorf("annotator name %q: want 1-64 letters, digits, '_', '.' or '-'", n)
		}
		if seen[n] {
			return fmt.Errorf("annotator name %q given twice", n)
		}
		seen[n] = true
	}
	return nil
}

// IsLoopback reports whether addr (host:port) binds only the loopback
// interface. An empty host binds every interface.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// TokensPath is the file that keeps the annotators' tokens next to a labels
// file, so that a restarted server accepts the same URLs.
func TokensPath(labels string) string { return labels + ".tokens.json" }

// LoadTokens reads the tokens file (name -> token), adds a fresh random
// token for each name it lacks, and writes it back (mode 0600) when it
// changed. Deleting the file revokes every URL.
func LoadTokens(path string, names []string) (map[string]string, error) {
	toks := map[string]string{}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &toks); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	changed := false
	for _, n := range names {
		if len(toks[n]) >= 32 {
			continue
		}
		var r [16]byte
		if _, err := rand.Read(r[:]); err != nil {
			return nil, err
		}
		toks[n] = hex.EncodeToString(r[:])
		changed = true
	}
	if !changed {
		return toks, nil
	}
	out, _ := json.MarshalIndent(toks, "", "  ")
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	_, err = f.Write(append(out, '\n'))
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return toks, nil
}

// NewServer opens the labels file (dropping a torn last record), replays it
// and returns a server ready to be served. Close it to sync and close the
// file.
func NewServer(cfg ServeConfig) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.PerItem <= 0 {
		cfg.PerItem = 1
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	names := cfg.Annotators
	if names == nil {
		names = []string{DefaultName}
	}
	if err := CheckNames(names); err != nil {
		return nil, err
	}
	loop, err := IsLoopback(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", cfg.Addr, err)
	}
	if !loop && cfg.Annotators == nil {
		return nil, fmt.Errorf("address %s is not a loopback address: name the annotators (--annotators) so that each gets a personal token URL", cfg.Addr)
	}
	if cfg.PerItem > len(names) {
		return nil, fmt.Errorf("%d labels per item need at least %d annotators, have %d", cfg.PerItem, cfg.PerItem, len(names))
	}
	if len(cfg.Items) == 0 {
		return nil, errors.New("no items to label")
	}
	s := &Server{cfg: cfg, items: cfg.Items, byID: map[string]int{}, ann: map[string]*annotator{}, loopback: loop}
	for i, it := range s.items {
		if _, dup := s.byID[it.ID]; dup {
			return nil, fmt.Errorf("item id %q given twice", it.ID)
		}
		s.byID[it.ID] = i
	}
	s.count = make([]int, len(s.items))
	s.leases = make([][]*lease, len(s.items))
	for _, n := range names {
		tok := cfg.Tokens[n]
		if len(tok) < 16 {
			return nil, fmt.Errorf("annotator %q has no token", n)
		}
		s.annotator(n).hash = sha256.Sum256([]byte(tok))
	}
	g := newLedger()
	app, _, err := jsonl.OpenAppend(cfg.Labels, func(raw json.RawMessage) (string, error) {
		var l Label
		if err := json.Unmarshal(raw, &l); err != nil {
			return "", err
		}
		if err := s.matches(&l); err != nil {
			return "", err
		}
		return "", g.add(&l)
	})
	if err != nil {
		return nil, err
	}
	// Standing labels, each annotator's in file order.
	for name, st := range g.stack {
		a := s.annotator(name)
		for _, k := range st {
			l := g.Labels[k]
			i := s.byID[l.ItemID]
			a.seen[i] = l.Choice
			a.history = append(a.history, i)
			if l.Choice != ChoiceSkip {
				s.count[i]++
			}
			s.total++
		}
	}
	for i := range s.items {
		if s.count[i] >= cfg.PerItem {
			s.complete++
		}
	}
	s.advance()
	s.store = newStore(app)
	return s, nil
}

// matches checks that a label read back from the file is about an item of
// the input, with the same responses.
func (s *Server) matches(l *Label) error {
	i, ok := s.byID[l.ItemID]
	if !ok {
		return fmt.Errorf("item %q is not in the input: serve the labels with the input they were made from", l.ItemID)
	}
	if l.Choice == ChoiceUndo {
		return nil
	}
	it := &s.items[i]
	if len(l.Responses) != 2 || l.Responses[0] != it.Responses[0] || l.Responses[1] != it.Responses[1] {
		return fmt.Errorf("item %q: the responses differ from the input's (was the input changed?)", l.ItemID)
	}
	return nil
}

func (s *Server) annotator(name string) *annotator {
	a := s.ann[name]
	if a == nil {
		a = &annotator{name: name, seen: map[int]string{}, seq: map[int]int64{}}
		s.ann[name] = a
	}
	return a
}

// advance moves firstOpen past complete items.
func (s *Server) advance() {
	for s.firstOpen < len(s.items) && s.count[s.firstOpen] >= s.cfg.PerItem {
		s.firstOpen++
	}
}

// Close syncs and closes the labels file.
func (s *Server) Close() error { return s.store.close() }

// Named is an annotator's name and personal URL.
type Named struct{ Name, URL string }

// URLs returns each annotator's URL for a server listening on addr, sorted
// by name as given in the config.
func (s *Server) URLs(addr net.Addr) []Named {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	names := s.cfg.Annotators
	if names == nil {
		names = []string{DefaultName}
	}
	var out []Named
	for _, n := range names {
		out = append(out, Named{n, "http://" + net.JoinHostPort(host, port) + "/?token=" + s.cfg.Tokens[n]})
	}
	return out
}

// Serve listens on cfg.Addr and serves until ctx ends, then shuts down
// (waiting for requests in flight) and closes the labels file. ready is
// called once the server listens, with every annotator's URL.
func Serve(ctx context.Context, cfg ServeConfig, ready func([]Named)) error {
	s, err := NewServer(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.Close()
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	if s.cfg.Log != nil {
		s.mu.Lock()
		fmt.Fprintf(s.cfg.Log, "annotate: %d items (%d complete), %s per item, %d labels in %s; listening on %s\n",
			len(s.items), s.complete, strconv.Itoa(s.cfg.PerItem), s.total, s.cfg.Labels, ln.Addr())
		s.mu.Unlock()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(s.URLs(ln.Addr()))
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if s.cfg.Log != nil {
		s.mu.Lock()
		fmt.Fprintf(s.cfg.Log, "annotate: stopped; %d labels this run, %d standing in %s, %d of %d items complete\n",
			s.session, s.total, s.cfg.Labels, s.complete, len(s.items))
		s.mu.Unlock()
	}
	return err
}

// ---- HTTP ----

var staticFiles = map[string]struct{ file, ctype string }{
	"/":           {"assets/index.html", "text/html; charset=utf-8"},
	"/index.html": {"assets/index.html", "text/html; charset=utf-8"},
	"/app.js":     {"assets/app.js", "text/javascript; charset=utf-8"},
	"/app.css":    {"assets/app.css", "text/css; charset=utf-8"},
}

const csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP serves the embedded page and the JSON API; nothing else.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	if s.loopback && !loopbackHost(r.Host) {
		// A page elsewhere that resolves its own name to 127.0.0.1 (DNS
		// rebinding) is refused before anything is served.
		httpError(w, http.StatusMisdirectedRequest, "this server answers to a loopback host name only")
		return
	}
	if f, ok := staticFiles[r.URL.Path]; ok {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			httpError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		b, _ := assets.ReadFile(f.file)
		h.Set("Content-Type", f.ctype)
		h.Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method == http.MethodGet {
			w.Write(b)
		}
		return
	}
	var want string
	var handle func(http.ResponseWriter, *http.Request, *annotator)
	switch r.URL.Path {
	case "/api/next":
		want, handle = http.MethodGet, s.handleNext
	case "/api/progress":
		want, handle = http.MethodGet, s.handleProgress
	case "/api/label":
		want, handle = http.MethodPost, s.handleLabel
	case "/api/undo":
		want, handle = http.MethodPost, s.handleUndo
	default:
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != want {
		h.Set("Allow", want)
		httpError(w, http.StatusMethodNotAllowed, "method not allowed: use "+want)
		return
	}
	a := s.auth(r)
	if a == nil {
		h.Set("WWW-Authenticate", `Bearer realm="align annotate"`)
		httpError(w, http.StatusUnauthorized, "missing or unknown token (Authorization: Bearer TOKEN)")
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	}
	handle(w, r, a)
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// auth finds the annotator whose token the request carries, comparing the
// token's hash with every annotator's in constant time.
func (s *Server) auth(r *http.Request) *annotator {
	v := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(v) <= len(p) || !strings.EqualFold(v[:len(p)], p) {
		return nil
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(v[len(p):])))
	var found *annotator
	for _, a := range s.ann {
		if a.hash == ([32]byte{}) {
			continue // an annotator known only from the labels file has no token
		}
		if subtle.ConstantTimeCompare(got[:], a.hash[:]) == 1 {
			found = a
		}
	}
	return found
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// Progress is what the page shows of an annotator's work.
type Progress struct {
	Done          int     `json:"done"`           // this annotator's standing labels, skips included
	Skipped       int     `json:"skipped"`        // of which skips
	Remaining     int     `json:"remaining"`      // items this annotator could still be given
	TotalItems    int     `json:"total_items"`    // items in the input
	CompleteItems int     `json:"complete_items"` // items with --per-item labels
	PerMinute     float64 `json:"per_minute"`     // this annotator's labels per minute over the last 10 minutes of this server
}

// ItemView is one item as /api/next hands it out: the responses in the
// order shown to this annotator.
type ItemView struct {
	ItemID    string    `json:"item_id"`
	System    string    `json:"system,omitempty"`
	Prompt    string    `json:"prompt,omitempty"`
	Messages  []Message `json:"messages,omitempty"`
	Responses [2]string `json:"responses"`
	Objective string    `json:"objective,omitempty"`
	Annotator string    `json:"annotator"`
	Rubric    bool      `json:"rubric"`
	Criteria  []string  `json:"criteria,omitempty"`
	Progress  Progress  `json:"progress"`
}

// shown returns the input indexes of item i in the order annotator a sees
// them: a hash of the name and the item id, so that the order is random
// across annotators and items but the same after a restart.
func (s *Server) shown(a *annotator, i int) [2]int {
	it := &s.items[i]
	h := sha256.Sum256([]byte("shown\x00" + a.name + "\x00" + it.ID))
	if h[0]&1 == 1 {
		return [2]int{it.Indexes[1], it.Indexes[0]}
	}
	return it.Indexes
}

func (s *Server) view(a *annotator, i int, now time.Time) ItemView {
	it := &s.items[i]
	order := s.shown(a, i)
	text := func(idx int) string {
		if idx == it.Indexes[0] {
			return it.Responses[0]
		}
		return it.Responses[1]
	}
	v := ItemView{ItemID: it.ID, System: it.System, Prompt: it.Prompt, Messages: it.Messages,
		Responses: [2]string{text(order[0]), text(order[1])}, Objective: it.Objective,
		Annotator: a.name, Rubric: s.cfg.Rubric, Progress: s.progress(a, now)}
	if s.cfg.Rubric {
		v.Criteria = Criteria
	}
	return v
}

// progress is computed under s.mu.
func (s *Server) progress(a *annotator, now time.Time) Progress {
	p := Progress{Done: len(a.history), TotalItems: len(s.items), CompleteItems: s.complete}
	for _, c := range a.seen {
		if c == ChoiceSkip {
			p.Skipped++
		}
	}
	for i := s.firstOpen; i < len(s.items); i++ {
		if s.count[i] < s.cfg.PerItem {
			if _, ok := a.seen[i]; !ok {
				p.Remaining++
			}
		}
	}
	from := now.Add(-10 * time.Minute)
	if a.started.After(from) {
		from = a.started
	}
	n := 0
	for _, t := range a.times {
		if !t.Before(from) {
			n++
		}
	}
	if span := now.Sub(from); n > 0 && span > time.Second {
		p.PerMinute = float64(n) / span.Minutes()
	}
	return p
}

// touch marks the annotator active (for the rate on the page).
func (s *Server) touch(a *annotator, now time.Time) {
	if a.started.IsZero() {
		a.started = now
	}
}

// expire drops the leases of item i that have been idle too long.
func (s *Server) expire(i int, now time.Time) {
	ls := s.leases[i]
	for k := 0; k < len(ls); k++ {
		if now.Sub(ls[k].touched) > s.cfg.Lease {
			ls[k].who.lease = nil
			ls = append(ls[:k], ls[k+1:]...)
			k--
		}
	}
	s.leases[i] = ls
}

func (s *Server) dropLease(a *annotator) {
	l := a.lease
	if l == nil {
		return
	}
	a.lease = nil
	ls := s.leases[l.item]
	for k, x := range ls {
		if x == l {
			s.leases[l.item] = append(ls[:k], ls[k+1:]...)
			break
		}
	}
}

// others counts the live leases on item i held by annotators other than a.
func (s *Server) others(i int, a *annotator, now time.Time) int {
	s.expire(i, now)
	n := 0
	for _, l := range s.leases[i] {
		if l.who != a {
			n++
		}
	}
	return n
}

// next returns the item annotator a holds, or hands out the first item
// that still needs labels, that a has not labelled or skipped, and that
// not enough other annotators hold already. -1: nothing for a now; held
// counts the items a could still get, held by others who may skip them
// or let their lease lapse (then a is asked to come back, not told that
// the work is done).
func (s *Server) next(a *annotator, now time.Time) (i, held int) {
	if l := a.lease; l != nil {
		if now.Sub(l.touched) <= s.cfg.Lease {
			l.touched = now
			return l.item, 0
		}
		s.dropLease(a)
	}
	s.advance()
	for i := s.firstOpen; i < len(s.items); i++ {
		if s.count[i] >= s.cfg.PerItem {
			continue
		}
		if _, ok := a.seen[i]; ok {
			continue
		}
		if s.count[i]+s.others(i, a, now) >= s.cfg.PerItem {
			held++
			continue
		}
		s.take(a, i, now)
		return i, 0
	}
	return -1, held
}

// RetryAfter is the Retry-After (seconds) of a 204 from /api/next while
// items a could still get are held by other annotators.
const RetryAfter = 3

func (s *Server) take(a *annotator, i int, now time.Time) {
	s.dropLease(a)
	l := &lease{item: i, who: a, at: now, touched: now}
	a.lease = l
	s.leases[i] = append(s.leases[i], l)
}

func (s *Server) handleNext(w http.ResponseWriter, r *http.Request, a *annotator) {
	now := s.cfg.Now()
	s.mu.Lock()
	s.touch(a, now)
	i, held := s.next(a, now)
	if i < 0 {
		s.mu.Unlock()
		if held > 0 {
			// Nothing for a now, but others hold items a may still get.
			w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
			w.Header().Set("X-Align-Held", strconv.Itoa(held))
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	v := s.view(a, i, now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleProgress(w http.ResponseWriter, r *http.Request, a *annotator) {
	now := s.cfg.Now()
	s.mu.Lock()
	s.touch(a, now)
	v := struct {
		Annotator string   `json:"annotator"`
		Rubric    bool     `json:"rubric"`
		Progress  Progress `json:"progress"`
	}{a.name, s.cfg.Rubric, s.progress(a, now)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// LabelRequest is the body of POST /api/label. Choice "a" and "b" name the
// responses as shown. Scores (with --rubric) are keyed by shown position,
// "a" and "b"; each criterion 1–5, or 0 for not given.
type LabelRequest struct {
	ItemID string                    `json:"item_id"`
	Choice string                    `json:"choice"`
	Scores map[string]backend.Scores `json:"scores,omitempty"`
	Reason string                    `json:"reason,omitempty"`
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", mb.Limit))
			return false
		}
		if errors.Is(err, io.EOF) {
			httpError(w, http.StatusBadRequest, "empty request body: want a JSON object")
			return false
		}
		httpError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	if dec.More() {
		httpError(w, http.StatusBadRequest, "bad request body: one JSON object expected")
		return false
	}
	return true
}

func checkScores(sc backend.Scores) error {
	for k, v := range map[string]int{"tone": sc.Tone, "accuracy": sc.Accuracy, "helpfulness": sc.Helpfulness, "safety": sc.Safety} {
		if v < 0 || v > 5 {
			return fmt.Errorf("score %s %d: want 1-5 (0: not given)", k, v)
		}
	}
	return nil
}

func (s *Server) handleLabel(w http.ResponseWriter, r *http.Request, a *annotator) {
	var req LabelRequest
	if !decodeBody(w, r, &req) {
		return
	}
	switch req.Choice {
	case ChoiceA, ChoiceB, ChoiceTie, ChoiceSkip:
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("choice %q: want a, b, tie or skip", req.Choice))
		return
	}
	if len(req.Reason) > MaxReason || !utf8.ValidString(req.Reason) {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("reason: want at most %d bytes of UTF-8 text", MaxReason))
		return
	}
	if len(req.Scores) > 0 && !s.cfg.Rubric {
		httpError(w, http.StatusBadRequest, "scores given but the server runs without --rubric")
		return
	}
	for k, sc := range req.Scores {
		if k != "a" && k != "b" {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("scores: key %q: want \"a\" or \"b\" (as shown)", k))
			return
		}
		if err := checkScores(sc); err != nil {
			httpError(w, http.StatusBadRequest, "scores "+k+": "+err.Error())
			return
		}
	}
	now, ok := s.lockWritable(w, a)
	if !ok {
		return
	}
	i, ok := s.byID[req.ItemID]
	if !ok {
		s.mu.Unlock()
		httpError(w, http.StatusNotFound, fmt.Sprintf("item %q not found", req.ItemID))
		return
	}
	if prev, done := a.seen[i]; done {
		seq := a.seq[i]
		s.mu.Unlock()
		if prev != req.Choice {
			httpError(w, http.StatusConflict, fmt.Sprintf("item %q already labelled %q by %s: undo it first", req.ItemID, prev, a.name))
			return
		}
		// The same label again (a retry after a lost answer): nothing is
		// appended; answer once it is on disk.
		if err := s.store.wait(seq); err != nil {
			httpError(w, http.StatusInternalServerError, "writing the labels file: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "duplicate": true})
		return
	}
	holds := a.lease != nil && a.lease.item == i
	if req.Choice != ChoiceSkip && !holds && s.count[i]+s.others(i, a, now) >= s.cfg.PerItem {
		s.mu.Unlock()
		httpError(w, http.StatusConflict, fmt.Sprintf("item %q has its %d labels (or is held by others)", req.ItemID, s.cfg.PerItem))
		return
	}
	it := &s.items[i]
	order := s.shown(a, i)
	l := Label{ItemID: it.ID, Annotator: a.name, Choice: req.Choice, ShownOrder: order[:], Time: now.UTC().Format(time.RFC3339Nano),
		Reason: req.Reason, Format: it.Format, CandidatesID: it.CandidatesID, PromptID: it.PromptID, PairID: it.PairID,
		Indexes: it.Indexes[:], Objective: it.Objective, System: it.System, Prompt: it.Prompt, Messages: it.Messages,
		Responses: it.Responses[:]}
	switch req.Choice {
	case ChoiceA:
		l.ChosenIndex = &order[0]
	case ChoiceB:
		l.ChosenIndex = &order[1]
	}
	if holds {
		l.Seconds = now.Sub(a.lease.at).Seconds()
	}
	if len(req.Scores) > 0 {
		l.Scores = make([]backend.Scores, 2)
		for k, pos := range map[string]int{"a": 0, "b": 1} {
			k2 := 0
			if order[pos] == it.Indexes[1] {
				k2 = 1
			}
			l.Scores[k2] = req.Scores[k]
		}
	}
	b, err := jsonl.Marshal(l)
	if err != nil {
		s.mu.Unlock()
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	seq, err := s.store.enqueue(b)
	if err != nil {
		s.broken = err
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "the labels file cannot be written: "+err.Error())
		return
	}
	a.seen[i] = req.Choice
	a.seq[i] = seq
	a.history = append(a.history, i)
	a.times = append(a.times, now)
	if req.Choice != ChoiceSkip {
		s.count[i]++
		if s.count[i] == s.cfg.PerItem {
			s.complete++
		}
	}
	s.total++
	s.session++
	if holds {
		s.dropLease(a)
	}
	p := s.progress(a, now)
	s.mu.Unlock()
	if err := s.store.wait(seq); err != nil {
		s.fail(err)
		httpError(w, http.StatusInternalServerError, "writing the labels file: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "progress": p})
}

func (s *Server) fail(err error) {
	s.mu.Lock()
	if s.broken == nil {
		s.broken = err
		if s.cfg.Log != nil {
			fmt.Fprintf(s.cfg.Log, "annotate: error: writing %s: %v (labels are refused; restart the server)\n", s.cfg.Labels, err)
		}
	}
	s.mu.Unlock()
}

// UndoRequest is the body of POST /api/undo: the item whose label to
// withdraw, which must be the annotator's latest standing label; empty
// means that latest label. Undoing an item that has no standing label of
// this annotator (a retried undo) changes nothing and answers 200.
type UndoRequest struct {
	ItemID string `json:"item_id,omitempty"`
}

func (s *Server) handleUndo(w http.ResponseWriter, r *http.Request, a *annotator) {
	var req UndoRequest
	if r.ContentLength != 0 && !decodeBody(w, r, &req) {
		return
	}
	now, ok := s.lockWritable(w, a)
	if !ok {
		return
	}
	i := -1
	if req.ItemID != "" {
		k, ok := s.byID[req.ItemID]
		if !ok {
			s.mu.Unlock()
			httpError(w, http.StatusNotFound, fmt.Sprintf("item %q not found", req.ItemID))
			return
		}
		if _, done := a.seen[k]; !done {
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, map[string]any{"ok": true, "undone": nil})
			return
		}
		if a.history[len(a.history)-1] != k {
			s.mu.Unlock()
			httpError(w, http.StatusConflict, fmt.Sprintf("item %q is not %s's latest label", req.ItemID, a.name))
			return
		}
		i = k
	} else {
		if len(a.history) == 0 {
			s.mu.Unlock()
			httpError(w, http.StatusConflict, "nothing to undo")
			return
		}
		i = a.history[len(a.history)-1]
	}
	it := &s.items[i]
	b, _ := jsonl.Marshal(Label{ItemID: it.ID, Annotator: a.name, Choice: ChoiceUndo, Time: now.UTC().Format(time.RFC3339Nano)})
	seq, err := s.store.enqueue(b)
	if err != nil {
		s.broken = err
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "the labels file cannot be written: "+err.Error())
		return
	}
	prev := a.seen[i]
	delete(a.seen, i)
	delete(a.seq, i)
	a.history = a.history[:len(a.history)-1]
	if n := len(a.times); n > 0 {
		a.times = a.times[:n-1]
	}
	if prev != ChoiceSkip {
		if s.count[i] == s.cfg.PerItem {
			s.complete--
		}
		s.count[i]--
	}
	s.total--
	if i < s.firstOpen {
		s.firstOpen = i
	}
	// The annotator gets the item back (when it is not taken meanwhile).
	s.dropLease(a)
	if s.count[i]+s.others(i, a, now) < s.cfg.PerItem {
		s.take(a, i, now)
	}
	p := s.progress(a, now)
	s.mu.Unlock()
	if err := s.store.wait(seq); err != nil {
		s.fail(err)
		httpError(w, http.StatusInternalServerError, "writing the labels file: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "undone": it.ID, "progress": p})
}

// Snapshot is the server's state for tests and the load driver.
type Snapshot struct {
	Complete, Total int
	Counts          map[string]int // item -> standing labels (not skips)
}

// Snapshot returns the current counts.
func (s *Server) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := Snapshot{Complete: s.complete, Total: s.total, Counts: map[string]int{}}
	for i, c := range s.count {
		sn.Counts[s.items[i].ID] = c
	}
	return sn
}

// lockWritable takes s.mu for a request that writes a label, marks a as
// active and returns the request's time; when an earlier write failed it
// answers 503, leaves the lock free and returns false.
func (s *Server) lockWritable(w http.ResponseWriter, a *annotator) (time.Time, bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	if s.broken != nil {
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "the labels file cannot be written: "+s.broken.Error())
		return now, false
	}
	s.touch(a, now)
	return now, true
}
