package standin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

type job struct {
	ID, ARN, Name, ModelID, RoleARN string
	InputURI, OutputURI             string
	Status, Message                 string
	Submit, End                     time.Time
	Polls                           int
	Processed, Succeeded, Failed    int64
}

func (j *job) summary() map[string]any {
	m := map[string]any{
		"jobArn":           j.ARN,
		"jobName":          j.Name,
		"modelId":          j.ModelID,
		"roleArn":          j.RoleARN,
		"status":           j.Status,
		"submitTime":       j.Submit.Format(time.RFC3339Nano),
		"lastModifiedTime": time.Now().UTC().Format(time.RFC3339Nano),
		"inputDataConfig":  map[string]any{"s3InputDataConfig": map[string]any{"s3Uri": j.InputURI, "s3InputFormat": "JSONL"}},
		"outputDataConfig": map[string]any{"s3OutputDataConfig": map[string]any{"s3Uri": j.OutputURI}},
	}
	if j.Message != "" {
		m["message"] = j.Message
	}
	if !j.End.IsZero() {
		m["endTime"] = j.End.Format(time.RFC3339Nano)
		m["processedRecordCount"] = j.Processed
		m["successRecordCount"] = j.Succeeded
		m["errorRecordCount"] = j.Failed
	}
	return m
}

func parseS3URI(uri string) (bucket, key string, ok bool) {
	rest, found := strings.CutPrefix(uri, "s3://")
	if !found {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, bucket != ""
}

func (s *Server) createJob(body []byte) (int, []byte) {
	var in struct {
		JobName         string `json:"jobName"`
		RoleArn         string `json:"roleArn"`
		ModelID         string `json:"modelId"`
		InputDataConfig struct {
			S3 *struct {
				S3URI string `json:"s3Uri"`
			} `json:"s3InputDataConfig"`
		} `json:"inputDataConfig"`
		OutputDataConfig struct {
			S3 *struct {
				S3URI string `json:"s3Uri"`
			} `json:"s3OutputDataConfig"`
		} `json:"outputDataConfig"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return errBody(400, "ValidationException", "malformed request: "+err.Error())
	}
	if in.JobName == "" || in.RoleArn == "" || in.ModelID == "" || in.InputDataConfig.S3 == nil || in.OutputDataConfig.S3 == nil {
		return errBody(400, "ValidationException", "jobName, roleArn, modelId, inputDataConfig and outputDataConfig are required")
	}
	if _, _, ok := parseS3URI(in.InputDataConfig.S3.S3URI); !ok {
		return errBody(400, "ValidationException", "input s3Uri is not an s3:// uri")
	}
	if _, _, ok := parseS3URI(in.OutputDataConfig.S3.S3URI); !ok {
		return errBody(400, "ValidationException", "output s3Uri is not an s3:// uri")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.Name == in.JobName {
			return errBody(409, "ConflictException", "a job named "+in.JobName+" already exists")
		}
	}
	s.nextJobID++
	id := fmt.Sprintf("standin%06d", s.nextJobID)
	j := &job{
		ID: id, ARN: fmt.Sprintf("arn:aws:bedrock:%s:%s:model-invocation-job/%s", s.cfg.Region, s.cfg.Account, id),
		Name: in.JobName, ModelID: in.ModelID, RoleARN: in.RoleArn,
		InputURI: in.InputDataConfig.S3.S3URI, OutputURI: in.OutputDataConfig.S3.S3URI,
		Status: "Submitted", Submit: time.Now().UTC(),
	}
	s.jobs[id] = j
	s.jobOrder = append(s.jobOrder, id)
	b, _ := json.Marshal(map[string]string{"jobArn": j.ARN})
	return 200, b
}

func (s *Server) getJob(id string) (int, []byte) {
	s.mu.Lock()
	j, ok := s.jobs[id]
	if !ok {
		s.mu.Unlock()
		return errBody(404, "ResourceNotFoundException", "no job "+id)
	}
	j.Polls++
	run := false
	switch {
	case j.Status == "Submitted" || j.Status == "InProgress":
		if j.Polls >= s.cfg.JobPolls {
			run = true
		} else {
			j.Status = "InProgress"
		}
	}
	s.mu.Unlock()
	if run {
		s.runJob(j) // outside the lock: it calls the model
	}
	s.mu.Lock()
	b, _ := json.Marshal(j.summary())
	s.mu.Unlock()
	return 200, b
}

func (s *Server) listJobs(q url.Values) (int, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, id := range s.jobOrder {
		j := s.jobs[id]
		if v := q.Get("statusEquals"); v != "" && v != j.Status {
			continue
		}
		if v := q.Get("nameContains"); v != "" && !strings.Contains(j.Name, v) {
			continue
		}
		out = append(out, j.summary())
	}
	if out == nil {
		out = []map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"invocationJobSummaries": out})
	return 200, b
}

// runJob processes every input record through the model and writes
// <input-file>.out files (records in reverse order, so callers must join on
// recordId) and manifest.json.out under <output-uri>/<job-id>/.
func (s *Server) runJob(j *job) {
	ib, ikey, _ := parseS3URI(j.InputURI)
	ob, okey, _ := parseS3URI(j.OutputURI)
	okey = strings.TrimSuffix(okey, "/")
	s.mu.Lock()
	var inputs []string
	for k := range s.objects {
		b, key, _ := strings.Cut(k, "/")
		if b == ib && (key == ikey || (strings.HasPrefix(key, ikey) && strings.HasSuffix(key, ".jsonl") && (ikey == "" || strings.HasSuffix(ikey, "/")))) {
			inputs = append(inputs, key)
		}
	}
	s.mu.Unlock()
	sort.Strings(inputs)
	finish := func(status, msg string) {
		s.mu.Lock()
		j.Status, j.Message, j.End = status, msg, time.Now().UTC()
		s.mu.Unlock()
	}
	if len(inputs) == 0 {
		finish("Failed", "no input found at "+j.InputURI)
		return
	}
	var inTok, outTok int64
	for _, key := range inputs {
		data, _ := s.Object(ib, key)
		var lines [][]byte
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var rec struct {
				RecordID   string          `json:"recordId"`
				ModelInput json.RawMessage `json:"modelInput"`
			}
			out := map[string]any{}
			if err := json.Unmarshal(line, &rec); err != nil || rec.ModelInput == nil {
				out["recordId"] = rec.RecordID
				out["error"] = map[string]any{"errorCode": 400, "errorMessage": "malformed record"}
			} else {
				out["recordId"], out["modelInput"] = rec.RecordID, rec.ModelInput
				req, err := nativeRequest("batch", j.ModelID, rec.ModelInput)
				req.RecordID = rec.RecordID
				var resp Response
				if err != nil {
					resp.Err = &APIError{400, "ValidationException", err.Error()}
				} else {
					resp = s.callModel(req)
				}
				if resp.Err != nil {
					out["error"] = map[string]any{"errorCode": resp.Err.Status, "errorMessage": resp.Err.Message}
				} else {
					body := nativeResponse(req, resp)
					out["modelOutput"] = json.RawMessage(body)
					var u struct {
						PromptTokens int64 `json:"prompt_token_count"`
						GenTokens    int64 `json:"generation_token_count"`
						Usage        struct {
							In  int64 `json:"input_tokens"`
							Out int64 `json:"output_tokens"`
						} `json:"usage"`
					}
					json.Unmarshal(body, &u)
					inTok += u.PromptTokens + u.Usage.In
					outTok += u.GenTokens + u.Usage.Out
				}
			}
			b, _ := json.Marshal(out)
			lines = append(lines, b)
			s.mu.Lock()
			j.Processed++
			if _, failed := out["error"]; failed {
				j.Failed++
			} else {
				j.Succeeded++
			}
			s.mu.Unlock()
		}
		var buf bytes.Buffer
		for i := len(lines) - 1; i >= 0; i-- {
			buf.Write(lines[i])
			buf.WriteByte('\n')
		}
		name := key[strings.LastIndexByte(key, '/')+1:]
		s.PutObject(ob, joinKey(okey, j.ID, name+".out"), buf.Bytes())
	}
	s.mu.Lock()
	manifest, _ := json.Marshal(map[string]any{
		"totalRecordCount": j.Processed, "processedRecordCount": j.Processed,
		"successRecordCount": j.Succeeded, "errorRecordCount": j.Failed,
		"inputTokenCount": inTok, "outputTokenCount": outTok,
	})
	failed := j.Failed
	s.mu.Unlock()
	s.PutObject(ob, joinKey(okey, j.ID, "manifest.json.out"), manifest)
	if failed > 0 {
		finish("PartiallyCompleted", fmt.Sprintf("%d records failed", failed))
	} else {
		finish("Completed", "")
	}
}

func joinKey(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p = strings.Trim(p, "/"); p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "/")
}
