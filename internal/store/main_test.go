package store_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Watches start goroutines; every one must end with its context.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
