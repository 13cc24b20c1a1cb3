package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/align-dev/align/align/backend/bedrock"
	"github.com/align-dev/align/align/backend/bedrock/standin"
)

func newTestBatch(t *testing.T, s *standin.Server) *BatchConfig {
	t.Helper()
	o := fastOpen(s)
	b, err := bedrock.NewBatch(context.Background(), bedrock.BatchOptions{
		Options:      bedrock.Options{AWSConfig: o.AWSConfig, Endpoint: s.URL(), MaxAttempts: 3, MaxBackoff: 5 * time.Millisecond},
		S3Endpoint:   s.S3URL(),
		S3PathStyle:  true,
		RoleARN:      "arn:aws:iam::123456789012:role/align-batch",
		Bucket:       "align-test",
		Prefix:       "runs",
		PollInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &BatchConfig{Client: b}
}
