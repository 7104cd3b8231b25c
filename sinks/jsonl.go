package sinks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

const (
	defaultMaxBytes      = 100 << 20
	defaultMaxFiles      = 5
	defaultFlushInterval = time.Second
	defaultQueueSize     = 1024
	bufferSize           = 64 << 10
)

// JSONLOptions configure a JSONL sink. Zero values select the defaults.
type JSONLOptions struct {
	// Path is the file to append to. Its directory must exist.
	Path string
	// MaxBytes is the size at which the file is rotated (default 100 MiB). A
	// record is never split: a file exceeds MaxBytes only when it holds a
	// single record longer than MaxBytes.
	MaxBytes int64
	// MaxFiles is the number of files kept, the live one included (default
	// 5): Path, Path.1 (newest rotated) ... Path.<MaxFiles-1> (oldest). With
	// MaxFiles 1 a full file is deleted and restarted.
	MaxFiles int
	// FlushInterval is how often buffered records are written out (and
	// synced, see SyncOnFlush) by the background goroutine (default 1s).
	FlushInterval time.Duration
	// QueueSize is the number of encoded records that may wait for the
	// writer goroutine (default 1024). Records arriving while it is full are
	// dropped.
	QueueSize int
	// SyncOnFlush makes every flush call fsync on the file (default true).
	SyncOnFlush *bool
	// OnError, if set, receives every I/O error of the writer goroutine
	// (write, flush, sync, open, rotate); each is also counted in
	// Stats.Errors. It is called from the writer goroutine, so it should
	// return quickly, and it must not call the sink's Flush or Close, which
	// would deadlock. Errors returned by Write itself are not passed to it.
	OnError func(error)
}

// JSONL is a sink that appends JSON lines to a file with size-based rotation.
//
// Write encodes the record and hands the line to a bounded queue read by a
// single writer goroutine, so Write never waits for the disk. When the queue
// is full the record is dropped, counted in Stats.Dropped, and Write returns
// ErrQueueFull.
//
// The writer goroutine buffers lines in a 64 KiB bufio.Writer and writes the
// buffer out every FlushInterval, when it is full, on Flush and on Close;
// every such flush is followed by fsync when SyncOnFlush is set (the default)
// and something was written since the last one. Durability bound: a crash
// loses at most the records of the last FlushInterval (those still buffered,
// plus any backlog of at most QueueSize records queued behind a slow disk);
// with SyncOnFlush false, a crash of the machine (power loss, kernel panic)
// can additionally lose whatever the kernel had not yet written back from
// the page cache.
//
// Rotation: before a line would take the file beyond MaxBytes, the file is
// flushed, synced and closed, Path.<MaxFiles-1> is deleted, Path.i is renamed
// to Path.<i+1> for i from MaxFiles-2 down to 1, Path is renamed to Path.1,
// and a new Path is created.
//
// Errors: lines are written whole (a flush only ever writes complete lines).
// When a write fails (for example ENOSPC), the error is counted and passed
// to OnError, the records of the failed write are lost and counted as
// dropped, bytes of a partial write are truncated away, and the file is
// closed; the next record reopens it and tries again, so detection goes on
// and writing resumes once the disk recovers. If the torn tail cannot be
// truncated, the next record starts on a new line so that only the torn
// line is invalid.
type JSONL struct {
	path     string
	maxBytes int64
	maxFiles int
	interval time.Duration
	sync     bool
	onError  func(error)
	wrap     func(io.Writer) io.Writer // test hook: wraps the file for writing

	mu       sync.RWMutex // orders Write's queue send before Close's drain
	closed   bool
	queue    chan []byte
	flushReq chan chan error
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	closeErr error

	written, errs, dropped atomic.Int64

	// Owned by the writer goroutine (by newJSONL before it starts).
	f       *os.File
	out     io.Writer     // f, or wrap(f)
	bw      *bufio.Writer // over fileOut{s}
	size    int64         // bytes in the file as far as the sink knows
	pending int64         // records in bw
	dirty   bool          // written since the last fsync
	torn    bool          // the last failed write wrote part of its bytes
	needNL  bool          // the file does not end in '\n'
	opErrs  *[]error      // collects errors for the Flush or Close in progress
}

// NewJSONL opens (for appending, creating it if needed) the file o.Path and
// starts the sink's writer goroutine. The error names the path when its
// directory is missing or not writable or the file cannot be opened.
func NewJSONL(o JSONLOptions) (*JSONL, error) {
	return newJSONL(o, nil)
}

// newJSONL is NewJSONL with a hook that wraps the opened file for writing
// (tests use it to simulate slow or full disks). Truncation and fsync still
// go to the file itself.
func newJSONL(o JSONLOptions, wrap func(io.Writer) io.Writer) (*JSONL, error) {
	if o.Path == "" {
		return nil, errors.New("sinks: jsonl: empty path")
	}
	switch {
	case o.MaxBytes < 0:
		return nil, fmt.Errorf("sinks: jsonl %s: negative MaxBytes %d", o.Path, o.MaxBytes)
	case o.MaxFiles < 0:
		return nil, fmt.Errorf("sinks: jsonl %s: negative MaxFiles %d", o.Path, o.MaxFiles)
	case o.FlushInterval < 0:
		return nil, fmt.Errorf("sinks: jsonl %s: negative FlushInterval %v", o.Path, o.FlushInterval)
	case o.QueueSize < 0:
		return nil, fmt.Errorf("sinks: jsonl %s: negative QueueSize %d", o.Path, o.QueueSize)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = defaultMaxBytes
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = defaultMaxFiles
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = defaultFlushInterval
	}
	if o.QueueSize == 0 {
		o.QueueSize = defaultQueueSize
	}
	dir := filepath.Dir(o.Path)
	fi, err := os.Stat(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("sinks: jsonl %s: directory %s: %w", o.Path, dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("sinks: jsonl %s: %s is not a directory", o.Path, dir)
	}
	if err := dirWritable(dir); err != nil {
		return nil, fmt.Errorf("sinks: jsonl %s: directory %s is not writable: %w", o.Path, dir, err)
	}
	s := &JSONL{
		path:     o.Path,
		maxBytes: o.MaxBytes,
		maxFiles: o.MaxFiles,
		interval: o.FlushInterval,
		sync:     o.SyncOnFlush == nil || *o.SyncOnFlush,
		onError:  o.OnError,
		wrap:     wrap,
		queue:    make(chan []byte, o.QueueSize),
		flushReq: make(chan chan error),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.bw = bufio.NewWriterSize(fileOut{s}, bufferSize)
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("sinks: jsonl %s: %w", o.Path, err)
	}
	go s.run()
	return s, nil
}

// Name returns "jsonl:" followed by the file path.
func (s *JSONL) Name() string { return "jsonl:" + s.path }

// Stats returns the sink's counters.
func (s *JSONL) Stats() Stats {
	return Stats{Written: s.written.Load(), Errors: s.errs.Load(), Dropped: s.dropped.Load()}
}

// Write encodes r and queues it for the writer goroutine without waiting
// for the disk. It returns ErrQueueFull (counting the record as dropped)
// when the queue is full, ErrClosed after Close, and the encoding error
// (also counted as dropped) when r cannot be encoded, e.g. a NaN score.
func (s *JSONL) Write(r *Record) error {
	if r == nil {
		return errNilRecord
	}
	line, err := encodeLine(r)
	if err != nil {
		s.dropped.Add(1)
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.queue <- line:
		return nil
	default:
		s.dropped.Add(1)
		return ErrQueueFull
	}
}

// Flush waits until every record queued before the call is written to the
// file (and synced, with SyncOnFlush). It returns the errors met doing so,
// which were also passed to OnError, or ErrClosed once Close has begun.
// Errors of records the writer goroutine had already handled before the
// call are reported only through OnError and Stats.
func (s *JSONL) Flush() error {
	reply := make(chan error, 1)
	select {
	case s.flushReq <- reply:
		return <-reply
	case <-s.stop:
		return ErrClosed
	}
}

// Close writes out every queued record, flushes, syncs and closes the file,
// and stops the writer goroutine. It returns the errors met doing so (also
// passed to OnError); later calls return the same result.
func (s *JSONL) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.done
	})
	return s.closeErr
}

// run is the writer goroutine.
func (s *JSONL) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case line := <-s.queue:
			s.writeLine(line)
		case <-t.C:
			s.flushAll()
		case reply := <-s.flushReq:
			var errs []error
			s.opErrs = &errs
			s.drain(len(s.queue))
			s.flushAll()
			s.opErrs = nil
			reply <- errors.Join(errs...)
		case <-s.stop:
			// Write cannot queue any more: closed was set under mu.
			var errs []error
			s.opErrs = &errs
			s.drain(-1)
			s.flushAndClose()
			s.opErrs = nil
			s.closeErr = errors.Join(errs...)
			return
		}
	}
}

// drain writes up to n queued lines (all of them when n < 0) without waiting.
func (s *JSONL) drain(n int) {
	for i := 0; n < 0 || i < n; i++ {
		select {
		case line := <-s.queue:
			s.writeLine(line)
		default:
			return
		}
	}
}

// report counts err and passes it on.
func (s *JSONL) report(err error) {
	s.errs.Add(1)
	if s.opErrs != nil {
		*s.opErrs = append(*s.opErrs, err)
	}
	if s.onError != nil {
		s.onError(err)
	}
}

// ensureOpen (re)opens the file if a previous error closed it.
func (s *JSONL) ensureOpen() bool {
	if s.f != nil {
		return true
	}
	if err := s.open(); err != nil {
		s.report(fmt.Errorf("sinks: jsonl: %w", err))
		return false
	}
	return true
}

// writeLine buffers one encoded line, rotating and flushing as needed.
func (s *JSONL) writeLine(line []byte) {
	if !s.ensureOpen() {
		s.dropped.Add(1)
		return
	}
	if used := s.size + int64(s.bw.Buffered()); used > 0 && used+int64(len(line)) > s.maxBytes {
		s.rotate()
		if !s.ensureOpen() {
			s.dropped.Add(1)
			return
		}
	}
	// Keep every write to the file a run of whole lines: flush what is
	// buffered before a line that does not fit (bufio would otherwise fill
	// the buffer with part of it and write that).
	need := len(line)
	if s.needNL {
		need++
	}
	if need > s.bw.Available() && s.bw.Buffered() > 0 {
		if s.flushBuf() != nil && !s.ensureOpen() {
			s.dropped.Add(1)
			return
		}
	}
	if s.needNL {
		// The file ends in a torn line: end it so this record stays valid.
		s.needNL = false
		line = append([]byte{'\n'}, line...)
	}
	s.pending++
	if _, err := s.bw.Write(line); err != nil {
		s.fail(err) // only a line longer than the buffer is written directly
		return
	}
	if s.bw.Buffered() == 0 {
		s.commit()
	}
}

// commit counts the records of a successful write.
func (s *JSONL) commit() {
	s.written.Add(s.pending)
	s.pending = 0
	s.dirty = true
}

// flushBuf writes the buffered lines to the file.
func (s *JSONL) flushBuf() error {
	if s.bw.Buffered() == 0 {
		return nil
	}
	if err := s.bw.Flush(); err != nil {
		s.fail(err)
		return err
	}
	s.commit()
	return nil
}

// flushAll writes the buffered lines and, with SyncOnFlush, fsyncs the file.
// It reports its errors itself; the result says whether it succeeded.
func (s *JSONL) flushAll() bool {
	if s.f == nil {
		return true
	}
	if s.flushBuf() != nil {
		return false
	}
	if !s.sync || !s.dirty {
		return true
	}
	s.dirty = false
	if err := s.f.Sync(); err != nil {
		s.report(fmt.Errorf("sinks: jsonl: %w", err))
		return false
	}
	return true
}

// flushAndClose flushes and closes the file. A close error is reported
// unless the flush already failed (and was reported): the file is being
// given up on either way, and one failure is counted once.
func (s *JSONL) flushAndClose() {
	ok := s.flushAll()
	if err := s.closeFile(); err != nil && ok {
		s.report(fmt.Errorf("sinks: jsonl: %w", err))
	}
}

// fail handles a failed write: the buffered records are lost, a partial
// write is truncated away, and the file is closed to be reopened by the
// next record.
func (s *JSONL) fail(err error) {
	lost := s.pending
	s.pending = 0
	s.dropped.Add(lost)
	s.bw.Reset(fileOut{s})
	err = fmt.Errorf("sinks: jsonl: %d record(s) lost: %w", lost, err)
	if s.torn && s.f != nil {
		if terr := s.f.Truncate(s.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("sinks: jsonl: removing a partly written line: %w", terr))
		}
	}
	s.torn = false
	if cerr := s.closeFile(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("sinks: jsonl: closing after the failed write: %w", cerr))
	}
	s.report(err)
}

// rotate flushes and closes the file, shifts the rotated files and opens a
// new one. Errors are reported; the caller reopens the file if needed.
func (s *JSONL) rotate() {
	s.flushAndClose()
	rotated := func(i int) string { return fmt.Sprintf("%s.%d", s.path, i) }
	var errs []error
	keep := func(err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if s.maxFiles <= 1 {
		keep(os.Remove(s.path))
	} else {
		keep(os.Remove(rotated(s.maxFiles - 1)))
		for i := s.maxFiles - 2; i >= 1; i-- {
			keep(os.Rename(rotated(i), rotated(i+1)))
		}
		keep(os.Rename(s.path, rotated(1)))
	}
	if len(errs) > 0 {
		s.report(fmt.Errorf("sinks: jsonl: rotating: %w", errors.Join(errs...)))
	}
	if err := s.open(); err != nil {
		s.report(fmt.Errorf("sinks: jsonl: %w", err))
	}
}

// open opens the file for appending and learns its size and whether it ends
// in a newline.
func (s *JSONL) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if errors.Is(err, fs.ErrPermission) {
		// The tail check needs read access; appending does not.
		f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return errors.Join(err, f.Close())
	}
	s.f, s.out = f, io.Writer(f)
	if s.wrap != nil {
		s.out = s.wrap(f)
	}
	s.size, s.dirty, s.torn, s.needNL = fi.Size(), false, false, false
	if s.size > 0 && fi.Mode().IsRegular() {
		var b [1]byte
		if _, err := f.ReadAt(b[:], s.size-1); err == nil && b[0] != '\n' {
			s.needNL = true
		}
	}
	s.bw.Reset(fileOut{s})
	return nil
}

// closeFile closes the file if it is open.
func (s *JSONL) closeFile() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f, s.out, s.dirty = nil, nil, false
	return err
}

// fileOut is what the bufio.Writer writes to: the current file (or its
// wrapper), keeping track of the file size and of partial writes.
type fileOut struct{ s *JSONL }

func (w fileOut) Write(p []byte) (int, error) {
	s := w.s
	if s.out == nil {
		return 0, os.ErrClosed
	}
	n, err := s.out.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.torn = n > 0
		return n, err
	}
	s.size += int64(n)
	return n, nil
}
