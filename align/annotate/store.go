package annotate

import (
	"errors"
	"sync"

	"github.com/align-dev/align/align/jsonl"
)

// store appends records to the labels file with group commit: records are
// queued in the order the server decides them (under its lock), one
// goroutine writes whatever is queued and syncs once, and every request
// waits until the sync that covers its record has returned. Concurrent
// annotators thus share fsyncs instead of queueing behind each other's.
type store struct {
	app *jsonl.Appender

	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	queued  int64 // sequence number of the last queued record
	durable int64 // sequence number of the last synced record
	err     error // sticky: once a write or sync fails, nothing more is accepted
	closing bool

	wake chan struct{}
	done chan struct{}
}

var errStoreClosed = errors.New("labels file closed")

func newStore(app *jsonl.Appender) *store {
	s := &store{app: app, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

// enqueue queues one JSON record and returns its sequence number.
func (s *store) enqueue(b []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.closing {
		return 0, errStoreClosed
	}
	s.queue = append(s.queue, b)
	s.queued++
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return s.queued, nil
}

// wait blocks until record seq is synced, or returns the error that stopped
// the store.
func (s *store) wait(seq int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.durable < seq && s.err == nil {
		s.cond.Wait()
	}
	if s.durable >= seq {
		return nil
	}
	return s.err
}

func (s *store) loop() {
	defer close(s.done)
	for range s.wake {
		s.mu.Lock()
		q, upto, closing := s.queue, s.queued, s.closing
		s.queue = nil
		s.mu.Unlock()
		var err error
		for _, b := range q {
			if err = s.app.WriteRaw(b); err != nil {
				break
			}
		}
		if err == nil && len(q) > 0 {
			err = s.app.Sync()
		}
		s.mu.Lock()
		if err != nil {
			s.err = err
		} else {
			s.durable = upto
		}
		s.cond.Broadcast()
		s.mu.Unlock()
		if closing || err != nil {
			return
		}
	}
}

// close writes what is queued, stops the writer and closes the file.
func (s *store) close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
	err := s.app.Close()
	s.mu.Lock()
	if s.err == nil {
		s.err = errStoreClosed
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	return err
}
