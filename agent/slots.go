package agent

import (
	"context"
	"sync/atomic"
)

// slots bounds how many runs execute at once. A run that finds no free slot
// is told its place in the queue and waits for one; it is never refused.
type slots struct {
	sem      chan struct{}
	waiting  atomic.Int64
	onChange func()
}

func newSlots(capacity int, onChange func()) *slots {
	return &slots{sem: make(chan struct{}, capacity), onChange: onChange}
}

func (s *slots) running() int  { return len(s.sem) }
func (s *slots) capacity() int { return cap(s.sem) }

// acquire takes a slot, calling queued first when it has to wait.
func (s *slots) acquire(ctx context.Context, queued func(position int)) (release func(), err error) {
	select {
	case s.sem <- struct{}{}:
	default:
		queued(int(s.waiting.Add(1)))
		select {
		case s.sem <- struct{}{}:
			s.waiting.Add(-1)
		case <-ctx.Done():
			s.waiting.Add(-1)
			return nil, context.Cause(ctx)
		}
	}
	s.onChange()
	return func() {
		<-s.sem
		s.onChange()
	}, nil
}
