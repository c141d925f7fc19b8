package boss

import (
	"maps"
	"slices"
	"testing"
	"unsafe"

	"github.com/bettertest/bettertest"
)

// The cache of ended runs' results keeps what fits, the least recently
// used out first, and never what alone is bigger than it.
func TestCaseCacheKeepsTheRecentlyUsedWithinItsBound(t *testing.T) {
	one := []bettertest.TestResult{{Task: "unit", Case: "T1", Test: "unit/T1", Attempt: 1, Status: "passed"}}
	size := int(unsafe.Sizeof(bettertest.TestResult{})) + len("unit") + len("T1") + len("unit/T1") + len("passed")
	if got := resultsSize(one); got != size {
		t.Fatalf("resultsSize = %d, want %d", got, size)
	}
	c := caseCache{max: 2 * size}
	c.put(1, "unit", one)
	c.put(2, "unit", one)
	if _, ok := c.get(1, "unit"); !ok { // run 1 is now the more recently used
		t.Fatal("run 1's results are not kept")
	}
	c.put(3, "unit", one) // run 2 goes
	kept := map[int64]bool{}
	for run := int64(1); run <= 3; run++ {
		_, kept[run] = c.get(run, "unit")
	}
	if want := map[int64]bool{1: true, 2: false, 3: true}; !maps.Equal(kept, want) || c.size != 2*size {
		t.Fatalf("kept %v (%d bytes), want %v (%d bytes)", kept, c.size, want, 2*size)
	}
	c.put(4, "", append(slices.Clone(one), one...)) // exactly the bound: the rest go
	if _, ok := c.get(4, ""); !ok || c.size != 2*size {
		t.Fatalf("run 4's results, exactly the bound, are not kept alone (%d bytes)", c.size)
	}
	c.put(5, "", append(slices.Clone(one), one[0], one[0])) // bigger than the cache
	if _, ok := c.get(5, ""); ok || c.size != 2*size {
		t.Fatalf("results bigger than the cache were kept (%d bytes)", c.size)
	}
}
