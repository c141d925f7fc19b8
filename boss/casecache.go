package boss

import (
	"container/list"
	"sync"
	"unsafe"

	"github.com/bettertest/bettertest"
)

// endedCasesBytes bounds what the cache of ended runs' test results holds.
const endedCasesBytes = 16 << 20

// caseCache holds the test results of ended runs' tasks as read from the
// history, least recently used out first, at most max bytes of them. An
// ended run's results never change, and its page is read again and again
// (everyone opens the run that broke main); a task's 10,000 cases take
// longer to read from SQLite than its page takes to render. The zero value
// is ready; its slices are shared: never change them.
type caseCache struct {
	mu    sync.Mutex
	max   int // 0: endedCasesBytes
	size  int
	order list.List // of *caseEntry, most recently used first
	index map[caseKey]*list.Element
}

type caseKey struct {
	run  int64
	task string // "": all of the run's
}

type caseEntry struct {
	key     caseKey
	results []bettertest.TestResult
	size    int
}

func (c *caseCache) get(run int64, task string) ([]bettertest.TestResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.index[caseKey{run, task}]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*caseEntry).results, true
}

// put keeps the results of an ended run's task, unless they alone are more
// than the cache holds.
func (c *caseCache) put(run int64, task string, results []bettertest.TestResult) {
	size := resultsSize(results)
	c.mu.Lock()
	defer c.mu.Unlock()
	max := c.max
	if max == 0 {
		max = endedCasesBytes
	}
	key := caseKey{run, task}
	if _, ok := c.index[key]; ok || size > max {
		return
	}
	if c.index == nil {
		c.index = map[caseKey]*list.Element{}
	}
	c.index[key] = c.order.PushFront(&caseEntry{key: key, results: results[:len(results):len(results)], size: size})
	c.size += size
	for c.size > max {
		last := c.order.Back()
		e := c.order.Remove(last).(*caseEntry)
		delete(c.index, e.key)
		c.size -= e.size
	}
}

// resultsSize is what results take in memory: each one's fields and the
// bytes of its strings.
func resultsSize(results []bettertest.TestResult) int {
	const perResult = int(unsafe.Sizeof(bettertest.TestResult{}))
	n := 0
	for _, r := range results {
		n += perResult + len(r.Task) + len(r.Case) + len(r.Test) + len(r.Status) + len(r.Output)
	}
	return n
}
