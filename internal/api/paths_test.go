package api

import (
	"slices"
	"testing"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fogclient"
)

// The client names Fog's own endpoints without importing the API: the two must agree.
func TestClientPathsAgree(t *testing.T) {
	for _, tc := range []struct{ client, server string }{
		{fogclient.TokensPath, TokensPath},
		{fogclient.JoinTokensPath, JoinTokenPath},
		{fogclient.SubscriptionsPath, SubscriptionsPath},
		{fogclient.AgentsPath, agentapi.Path},
	} {
		if tc.client != tc.server {
			t.Errorf("the client says %q, the server %q", tc.client, tc.server)
		}
	}
	for _, vs := range []arm.APIVersions{InstanceAPIVersions, GroupAPIVersions} {
		if !slices.Contains(vs, fogclient.APIVersion) {
			t.Errorf("the server does not take the client's api-version %s (it takes %v)", fogclient.APIVersion, vs)
		}
	}
}
