package standin

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

type s3Error struct {
	XMLName xml.Name `xml:"Error"`
	Code    string   `xml:"Code"`
	Message string   `xml:"Message"`
}

func writeS3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	xml.NewEncoder(w).Encode(s3Error{Code: code, Message: msg})
}

// serveS3 serves path-style PutObject, GetObject and ListObjectsV2.
func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	path := r.URL.Path
	bucket, key, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	route := "s3:unknown"
	switch {
	case r.Method == http.MethodPut && key != "":
		route = "s3:PutObject"
	case r.Method == http.MethodGet && key != "":
		route = "s3:GetObject"
	case r.Method == http.MethodGet && key == "" && r.URL.Query().Get("list-type") == "2":
		route = "s3:ListObjectsV2"
	}
	s.count(route)
	if err := verifySigV4(r, body, s.cfg, "s3"); err != nil {
		s.mu.Lock()
		s.counts.BadSignatures++
		s.mu.Unlock()
		code := "SignatureDoesNotMatch"
		if se := err.(*sigError); se.code == "UnrecognizedClientException" {
			code = "InvalidAccessKeyId"
		}
		writeS3Error(w, 403, code, err.Error())
		return
	}
	if bucket == "" {
		writeS3Error(w, 400, "InvalidRequest", "path-style bucket required")
		return
	}
	switch route {
	case "s3:PutObject":
		if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
			if body, err = decodeAWSChunked(body); err != nil {
				writeS3Error(w, 400, "InvalidRequest", err.Error())
				return
			}
		}
		s.PutObject(bucket, key, body)
		sum := md5.Sum(body)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.WriteHeader(200)
	case "s3:GetObject":
		data, ok := s.Object(bucket, key)
		if !ok {
			writeS3Error(w, 404, "NoSuchKey", "the specified key does not exist")
			return
		}
		sum := md5.Sum(data)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(200)
		w.Write(data)
	case "s3:ListObjectsV2":
		s.listObjects(w, bucket, r.URL.Query().Get("prefix"))
	default:
		writeS3Error(w, 501, "NotImplemented", "the stand-in serves PutObject, GetObject and ListObjectsV2 only")
	}
}

type s3Object struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int    `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
}

type listResult struct {
	XMLName     xml.Name   `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name        string     `xml:"Name"`
	Prefix      string     `xml:"Prefix"`
	KeyCount    int        `xml:"KeyCount"`
	MaxKeys     int        `xml:"MaxKeys"`
	IsTruncated bool       `xml:"IsTruncated"`
	Contents    []s3Object `xml:"Contents"`
}

func (s *Server) listObjects(w http.ResponseWriter, bucket, prefix string) {
	s.mu.Lock()
	res := listResult{Name: bucket, Prefix: prefix, MaxKeys: 1000}
	for k, v := range s.objects {
		b, key, _ := strings.Cut(k, "/")
		if b == bucket && strings.HasPrefix(key, prefix) {
			sum := md5.Sum(v)
			res.Contents = append(res.Contents, s3Object{Key: key, Size: len(v), ETag: `"` + hex.EncodeToString(sum[:]) + `"`,
				LastModified: time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), StorageClass: "STANDARD"})
		}
	}
	s.mu.Unlock()
	sort.Slice(res.Contents, func(i, j int) bool { return res.Contents[i].Key < res.Contents[j].Key })
	res.KeyCount = len(res.Contents)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(200)
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(res)
}
