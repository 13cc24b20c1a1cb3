package standin

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sigError says why a request's signature was rejected.
type sigError struct {
	code string // InvalidSignatureException, UnrecognizedClientException, ...
	msg  string
}

func (e *sigError) Error() string { return e.code + ": " + e.msg }

// verifySigV4 recomputes the AWS Signature Version 4 of r (whose body has
// already been read into body) with the known secret and compares it with
// the one in the Authorization header. service is the signing name the
// route expects ("bedrock" or "s3").
func verifySigV4(r *http.Request, body []byte, cfg Config, service string) error {
	auth := r.Header.Get("Authorization")
	const alg = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(auth, alg) {
		return &sigError{"MissingAuthenticationTokenException", "missing or non-SigV4 authorization header"}
	}
	fields := map[string]string{}
	for _, part := range strings.Split(auth[len(alg):], ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return &sigError{"IncompleteSignatureException", "malformed authorization header"}
		}
		fields[k] = v
	}
	cred, signedHeaders, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signedHeaders == "" || sig == "" {
		return &sigError{"IncompleteSignatureException", "authorization header lacks Credential, SignedHeaders or Signature"}
	}
	// Credential=AKID/20240101/us-east-1/bedrock/aws4_request
	cp := strings.Split(cred, "/")
	if len(cp) != 5 || cp[4] != "aws4_request" {
		return &sigError{"IncompleteSignatureException", "malformed credential scope"}
	}
	akid, date, region, svc := cp[0], cp[1], cp[2], cp[3]
	if akid != cfg.AccessKeyID {
		return &sigError{"UnrecognizedClientException", "the security token included in the request is invalid"}
	}
	if svc != service {
		return &sigError{"InvalidSignatureException", fmt.Sprintf("credential should be scoped to correct service: %q, not %q", service, svc)}
	}
	if region != cfg.Region {
		return &sigError{"InvalidSignatureException", fmt.Sprintf("credential should be scoped to a valid region: %q, not %q", cfg.Region, region)}
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || t.Format("20060102") != date {
		return &sigError{"IncompleteSignatureException", "missing or inconsistent x-amz-date"}
	}
	if skew := time.Since(t); skew > 15*time.Minute || skew < -15*time.Minute {
		return &sigError{"InvalidSignatureException", "signature expired"}
	}
	if cfg.SessionToken != "" && r.Header.Get("X-Amz-Security-Token") != cfg.SessionToken {
		return &sigError{"UnrecognizedClientException", "the security token included in the request is invalid"}
	}

	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	switch {
	case payloadHash == "":
		payloadHash = bodyHash
	case payloadHash == "UNSIGNED-PAYLOAD" || strings.HasPrefix(payloadHash, "STREAMING-"):
		// signed as a literal; the body is not covered
	case payloadHash != bodyHash:
		return &sigError{"XAmzContentSHA256Mismatch", "the provided x-amz-content-sha256 header does not match what was computed"}
	}

	names := strings.Split(signedHeaders, ";")
	if !sort.StringsAreSorted(names) || !contains(names, "host") {
		return &sigError{"InvalidSignatureException", "signed headers must be sorted and include host"}
	}
	var ch strings.Builder
	for _, name := range names {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			vals = append([]string(nil), r.Header.Values(name)...)
			if name == "transfer-encoding" {
				vals = append([]string(nil), r.TransferEncoding...)
			}
		}
		if len(vals) == 0 {
			return &sigError{"InvalidSignatureException", "signed header " + name + " is missing"}
		}
		for i, v := range vals {
			vals[i] = strings.TrimSpace(stripExcessSpaces(v))
		}
		ch.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}

	uri := r.RequestURI
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if uri == "" {
		uri = "/"
	}
	if service != "s3" {
		uri = escapePath(uri) // non-S3 services sign the already-escaped path escaped again
	}
	canonical := strings.Join([]string{r.Method, uri, canonicalQuery(r.URL.Query()), ch.String(), signedHeaders, payloadHash}, "\n")
	scope := date + "/" + region + "/" + svc + "/aws4_request"
	crh := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crh[:])
	key := hmacSHA256([]byte("AWS4"+cfg.SecretAccessKey), date)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, svc)
	key = hmacSHA256(key, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return &sigError{"InvalidSignatureException", "the request signature we calculated does not match the signature you provided"}
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// escapePath escapes every byte but the unreserved set and '/', as the
// SDK's signer does (smithy-go httpbinding.EscapePath).
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if unreserved(c) || c == '/' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func escapeQuery(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func canonicalQuery(q url.Values) string {
	type kv struct{ k, v string }
	var ps []kv
	for k, vs := range q {
		for _, v := range vs {
			ps = append(ps, kv{escapeQuery(k), escapeQuery(v)})
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].k != ps[j].k {
			return ps[i].k < ps[j].k
		}
		return ps[i].v < ps[j].v
	})
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

func stripExcessSpaces(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// decodeAWSChunked decodes an aws-chunked body ("<hex-size>[;ext]\r\n<data>\r\n
// ... 0\r\n<trailers>\r\n"), as S3 uploads may use.
func decodeAWSChunked(b []byte) ([]byte, error) {
	var out []byte
	for {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok {
			return nil, errors.New("aws-chunked: missing chunk header")
		}
		sizeStr, _, _ := strings.Cut(string(line), ";")
		n, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
		if err != nil || n < 0 || int64(len(rest)) < n {
			return nil, errors.New("aws-chunked: bad chunk size")
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, rest[:n]...)
		b = bytes.TrimPrefix(rest[n:], []byte("\r\n"))
	}
}
