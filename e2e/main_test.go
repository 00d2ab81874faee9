package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/8thdegree/meridian/deploy/local/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// client is shared by the tests: keep-alive, no redirects, a timeout that only a hang reaches.
var client = &http.Client{
	Timeout: 20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}
