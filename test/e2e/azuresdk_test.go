package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/sql/armsql"
)

type staticToken string

func (t staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(t), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestAzureSDK drives Fog with Microsoft's own Go SDK (armsql), unchanged: its bearer-token
// policy, its long-running-operation pollers and its error type.
func TestAzureSDK(t *testing.T) {
	f := startFog(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := &arm.ClientOptions{DisableRPRegistration: true, ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: f.info.APIURL, Audience: "https://management.core.windows.net/"}}},
		Transport: f.hc,
	}}
	cred := staticToken(f.info.Token)
	mic, err := armsql.NewManagedInstancesClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	poll := &runtime.PollUntilDoneOptions{Frequency: 200 * time.Millisecond}
	create := func(rg, name, loc string, partner *string) armsql.ManagedInstance {
		t.Helper()
		p, err := mic.BeginCreateOrUpdate(ctx, rg, name, armsql.ManagedInstance{
			Location: to.Ptr(loc),
			SKU:      &armsql.SKU{Name: to.Ptr("GP_Gen5"), Tier: to.Ptr("GeneralPurpose")},
			Properties: &armsql.ManagedInstanceProperties{
				AdministratorLogin: to.Ptr("fogadmin"), AdministratorLoginPassword: to.Ptr(password),
				VCores: to.Ptr[int32](8), StorageSizeInGB: to.Ptr[int32](256), DNSZonePartner: partner,
			},
		}, nil)
		if err != nil {
			t.Fatalf("BeginCreateOrUpdate %s: %v", name, err)
		}
		res, err := p.PollUntilDone(ctx, poll)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return res.ManagedInstance
	}
	prim := create("rg-sdk", "sdk-p", "eastus", nil)
	if *prim.Properties.ProvisioningState != armsql.ManagedInstancePropertiesProvisioningStateSucceeded || *prim.Properties.State != "Ready" {
		t.Errorf("created instance: provisioningState %v, state %v", *prim.Properties.ProvisioningState, *prim.Properties.State)
	}
	sec := create("rg-sdk2", "sdk-s", "westus", prim.ID)
	if *sec.Properties.DNSZone != *prim.Properties.DNSZone {
		t.Errorf("dnsZone %s, want the partner's %s", *sec.Properties.DNSZone, *prim.Properties.DNSZone)
	}
	_, err = mic.Get(ctx, "rg-sdk", "nope", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "ResourceNotFound" {
		t.Errorf("Get of a missing instance: %v, want a 404 ResponseError ResourceNotFound", err)
	}

	fgc, err := armsql.NewInstanceFailoverGroupsClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := fgc.BeginCreateOrUpdate(ctx, "rg-sdk", "eastus", "sdkfg", armsql.InstanceFailoverGroup{
		Properties: &armsql.InstanceFailoverGroupProperties{
			ReadWriteEndpoint: &armsql.InstanceFailoverGroupReadWriteEndpoint{FailoverPolicy: to.Ptr(armsql.ReadWriteEndpointFailoverPolicyManual)},
			ReadOnlyEndpoint:  &armsql.InstanceFailoverGroupReadOnlyEndpoint{FailoverPolicy: to.Ptr(armsql.ReadOnlyEndpointFailoverPolicyDisabled)},
			PartnerRegions:    []*armsql.PartnerRegionInfo{{Location: to.Ptr("westus")}},
			ManagedInstancePairs: []*armsql.ManagedInstancePairInfo{{
				PrimaryManagedInstanceID: prim.ID, PartnerManagedInstanceID: sec.ID,
			}},
		},
	}, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate group: %v", err)
	}
	g, err := cp.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatalf("create group: %v", err)
	}
	if *g.Properties.ReplicationRole != armsql.InstanceFailoverGroupReplicationRolePrimary || *g.Properties.ReplicationState != "CATCH_UP" {
		t.Errorf("group after create: %v %v", *g.Properties.ReplicationRole, *g.Properties.ReplicationState)
	}
	fp, err := fgc.BeginFailover(ctx, "rg-sdk2", "westus", "sdkfg", nil)
	if err != nil {
		t.Fatalf("BeginFailover: %v", err)
	}
	after, err := fp.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	if *after.Properties.ReplicationRole != armsql.InstanceFailoverGroupReplicationRolePrimary ||
		*after.Properties.ManagedInstancePairs[0].PrimaryManagedInstanceID != *sec.ID {
		t.Errorf("after failover the westus side is %v with primary %v", *after.Properties.ReplicationRole, *after.Properties.ManagedInstancePairs[0].PrimaryManagedInstanceID)
	}
	pager := fgc.NewListByLocationPager("rg-sdk", "eastus", nil)
	n := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Value {
			n++
			if *v.Properties.ReplicationRole != armsql.InstanceFailoverGroupReplicationRoleSecondary {
				t.Errorf("eastus now reports %v, want Secondary", *v.Properties.ReplicationRole)
			}
		}
	}
	if n != 1 {
		t.Errorf("list by location: %d groups, want 1", n)
	}
	_, err = fgc.BeginFailover(ctx, "rg-sdk2", "westus", "sdkfg", nil)
	if !errors.As(err, &re) || re.ErrorCode != "InstanceFailoverGroupFailoverRequestOnPrimary" {
		t.Errorf("failover on the primary side: %v", err)
	}
	dp, err := fgc.BeginDelete(ctx, "rg-sdk2", "westus", "sdkfg", nil)
	if err != nil {
		t.Fatalf("BeginDelete: %v", err)
	}
	if _, err := dp.PollUntilDone(ctx, poll); err != nil {
		t.Fatalf("delete group: %v", err)
	}
}
