package standin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

func signed(t *testing.T, s *Server, body, sendBody []byte, secret string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/model/meta.llama3-8b-instruct-v1%3A0/converse", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	cfg := s.Config()
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: secret}, req, hex.EncodeToString(sum[:]), "bedrock", cfg.Region, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req.Body = io.NopCloser(bytes.NewReader(sendBody))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestSignatureChecks(t *testing.T) {
	s := Start(Config{}, nil)
	defer s.Close()
	body := []byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`)
	tampered := []byte(`{"messages":[{"role":"user","content":[{"text":"HI"}]}]}`)
	tests := []struct {
		name       string
		send       []byte
		secret     string
		wantStatus int
		wantType   string
	}{
		{"good", body, s.Config().SecretAccessKey, 200, ""},
		{"body changed after signing", tampered, s.Config().SecretAccessKey, 403, "InvalidSignatureException"},
		{"wrong secret", body, "wrong", 403, "InvalidSignatureException"},
	}
	for _, tt := range tests {
		resp := signed(t, s, body, tt.send, tt.secret)
		if resp.StatusCode != tt.wantStatus {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.wantStatus)
		}
		if got := resp.Header.Get("X-Amzn-ErrorType"); tt.wantType != "" && !bytes.HasPrefix([]byte(got), []byte(tt.wantType)) {
			t.Errorf("%s: error type %q, want %s", tt.name, got, tt.wantType)
		}
	}
	// Unsigned.
	resp, err := http.Post(s.URL()+"/model/x/converse", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("unsigned: status %d, want 403", resp.StatusCode)
	}
	if c := s.Counts(); c.BadSignatures != 3 || c.Requests["converse"] != 4 || c.Answered != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestAWSChunked(t *testing.T) {
	got, err := decodeAWSChunked([]byte("5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"))
	if err != nil || string(got) != "hello world" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := decodeAWSChunked([]byte("zz\r\n")); err == nil {
		t.Error("bad size accepted")
	}
}
