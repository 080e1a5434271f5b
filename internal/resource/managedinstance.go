// Package resource defines Fog's ARM resource types (ManagedInstance, Database), their wire
// JSON and the rules a request must satisfy.
package resource

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/fogdb/fog/internal/ltr"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
)

// Type names as ARM reports them.
const (
	TypeManagedInstance = "Microsoft.Sql/managedInstances"
	TypeDatabase        = "Microsoft.Sql/managedInstances/databases"
	// TypeRestorableDroppedDatabase is a database dropped from an instance that its backups
	// can restore.
	TypeRestorableDroppedDatabase = "Microsoft.Sql/managedInstances/restorableDroppedDatabases"
	// TypeRecoverableDatabase is a database a geo-restore can recover.
	TypeRecoverableDatabase = "Microsoft.Sql/managedInstances/recoverableDatabases"
)

// Provisioning states.
const (
	ProvisioningCreating  = "Creating"
	ProvisioningUpdating  = "Updating"
	ProvisioningDeleting  = "Deleting"
	ProvisioningSucceeded = "Succeeded"
	ProvisioningFailed    = "Failed"
)

// Defaults, as az and Azure apply them.
const (
	DefaultVCores         = 8
	DefaultStorageGB      = 256
	DefaultCollation      = "C.UTF-8"
	DefaultTimezone       = "UTC"
	DefaultLicenseType    = "LicenseIncluded"
	DefaultDatabaseFormat = "SQLServer2022"
	DefaultFamily         = "Gen5"
	// DefaultBackupRetentionDays is Azure's point-in-time restore window when none is set.
	DefaultBackupRetentionDays = 7
	// DefaultBackupStorageRedundancy is Azure's default for a new instance.
	DefaultBackupStorageRedundancy = "Geo"
)

// ManagedInstance is the stored record of a managed instance: what the user asked for plus
// what Fog assigned (uid, address, DNS zone). The admin password is kept only as a SCRAM
// verifier.
type ManagedInstance struct {
	UID                string            `json:"uid"`
	Subscription       string            `json:"subscription"`
	ResourceGroup      string            `json:"resourceGroup"`
	Name               string            `json:"name"`
	Location           string            `json:"location"`
	Tags               map[string]string `json:"tags,omitempty"`
	Tier               string            `json:"tier"`
	Family             string            `json:"family"`
	VCores             int               `json:"vCores"`
	StorageSizeInGB    int               `json:"storageSizeInGB"`
	Collation          string            `json:"collation"`
	TimezoneID         string            `json:"timezoneId"`
	AdministratorLogin string            `json:"administratorLogin"`
	PasswordVerifier   string            `json:"passwordVerifier"`
	DNSZone            string            `json:"dnsZone"`
	DNSZonePartner     string            `json:"dnsZonePartner,omitempty"`
	LicenseType        string            `json:"licenseType"`
	InstancePoolID     string            `json:"instancePoolId,omitempty"`
	DatabaseFormat     string            `json:"databaseFormat"`
	Host               string            `json:"host"`
	Port               int               `json:"port"`
	ProvisioningState  string            `json:"provisioningState"`
	Generation         int64             `json:"generation"`
	// FailoverGroup is the name of the group the instance is in, if any.
	FailoverGroup string `json:"failoverGroup,omitempty"`
	// ActiveOperation is the id of the operation that owns the instance right now, if any.
	ActiveOperation string    `json:"activeOperation,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`

	// Backups (docs/backups.md). BackupStanza names the instance's backup history in its
	// region's repository: its UID when it is created; the primary's while it is a failover
	// group's secondary (the two are one PostgreSQL system); "<uid>-<n>" once it leaves a group
	// as the secondary, since it is then a writable system of its own. A record an older Fog
	// wrote has none (Stanza). BackupStanzas is the n last used.
	BackupStanza  string `json:"backupStanza,omitempty"`
	BackupStanzas int    `json:"backupStanzas,omitempty"`
	// BackupSeq and BackupType are the backup last asked of the agent (instance.BackupSpec);
	// BackupAskedAt is when.
	BackupSeq     int64     `json:"backupSeq,omitempty"`
	BackupType    string    `json:"backupType,omitempty"`
	BackupAskedAt time.Time `json:"backupAskedAt,omitzero"`
	// BackupRetentionDays keeps that many days restorable (0: DefaultBackupRetentionDays).
	BackupRetentionDays int `json:"backupRetentionDays,omitempty"`
	// BackupStorageRedundancy is the ARM property as asked ("": DefaultBackupStorageRedundancy).
	BackupStorageRedundancy string `json:"backupStorageRedundancy,omitempty"`
	// BackupKeep are the full backups long-term retention keeps in the instance's
	// repository, each until its time (the longest of its databases' LTR records), carried
	// to the agent's expiry by the spec (instance.Spec.BackupKeep).
	BackupKeep []ltr.Keep `json:"backupKeep,omitempty"`
}

// Stanza is the instance's backup stanza. A record an older Fog wrote has none: it gets the
// one it would have been given at creation, its UID (a failover group's secondary of such a
// record takes its primary's; package engine sees to that).
func (m *ManagedInstance) Stanza() string {
	if m.BackupStanza != "" {
		return m.BackupStanza
	}
	return m.UID
}

// RetentionDays is how many days of backups the instance keeps restorable.
func (m *ManagedInstance) RetentionDays() int {
	if m.BackupRetentionDays > 0 {
		return m.BackupRetentionDays
	}
	return DefaultBackupRetentionDays
}

// StorageRedundancy is the instance's backupStorageRedundancy.
func (m *ManagedInstance) StorageRedundancy() string {
	if m.BackupStorageRedundancy != "" {
		return m.BackupStorageRedundancy
	}
	return DefaultBackupStorageRedundancy
}

// stanzaRe is what a stanza may be: it names a directory of the region's repository (and,
// with object storage, a container, whose names are lower case), and is a pgBackRest option
// value.
var stanzaRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// NewStanza is the n-th stanza of the instance with uid: the uid itself for n == 0 (its
// creation), "<uid>-<n>" after it left its n-th failover group as the secondary. It fails for
// a uid that makes no valid stanza (Fog's uids are lower-case hex and hyphens).
func NewStanza(uid string, n int) (string, error) {
	s := uid
	if n > 0 {
		s = fmt.Sprintf("%s-%d", uid, n)
	}
	if !stanzaRe.MatchString(s) {
		return "", fmt.Errorf("backup stanza %q of instance %s: a stanza is 1 to 63 lower-case letters, digits, '_' and '-', starting with a letter or digit", s, uid)
	}
	return s, nil
}

// ID is the ARM id.
func (m *ManagedInstance) ID() string { return arm.InstanceID(m.Subscription, m.ResourceGroup, m.Name) }

// SkuName is "GP_Gen5" or "BC_Gen5".
func (m *ManagedInstance) SkuName() string { return skuPrefix(m.Tier) + "_" + m.Family }

// Sku is the ARM sku block.
type Sku struct {
	Name     string `json:"name,omitempty"`
	Tier     string `json:"tier,omitempty"`
	Family   string `json:"family,omitempty"`
	Capacity *int   `json:"capacity,omitempty"`
}

// InstanceProperties is the properties block of a managed instance, as sent and as returned.
// Pointers distinguish "not sent" from a zero value. Host and Port are Fog's additions: the
// address the instance listens on until DNS serves the fully qualified name.
type InstanceProperties struct {
	ProvisioningState          string  `json:"provisioningState,omitempty"`
	State                      string  `json:"state,omitempty"`
	FullyQualifiedDomainName   string  `json:"fullyQualifiedDomainName,omitempty"`
	AdministratorLogin         *string `json:"administratorLogin,omitempty"`
	AdministratorLoginPassword *string `json:"administratorLoginPassword,omitempty"`
	VCores                     *int    `json:"vCores,omitempty"`
	StorageSizeInGB            *int    `json:"storageSizeInGB,omitempty"`
	Collation                  *string `json:"collation,omitempty"`
	TimezoneID                 *string `json:"timezoneId,omitempty"`
	DNSZone                    *string `json:"dnsZone,omitempty"`
	DNSZonePartner             *string `json:"dnsZonePartner,omitempty"`
	LicenseType                *string `json:"licenseType,omitempty"`
	InstancePoolID             *string `json:"instancePoolId,omitempty"`
	DatabaseFormat             *string `json:"databaseFormat,omitempty"`
	// BackupStorageRedundancy is where the instance's backups are kept: Local, Zone, Geo or
	// GeoZone (docs/backups.md says what each means for Fog).
	BackupStorageRedundancy *string `json:"backupStorageRedundancy,omitempty"`
	Host                    string  `json:"host,omitempty"`
	Port                    int     `json:"port,omitempty"`
}

// InstanceJSON is the wire form of a managed instance.
type InstanceJSON struct {
	ID         string             `json:"id,omitempty"`
	Name       string             `json:"name,omitempty"`
	Type       string             `json:"type,omitempty"`
	Location   string             `json:"location"`
	Tags       map[string]string  `json:"tags,omitempty"`
	Sku        *Sku               `json:"sku,omitempty"`
	Properties InstanceProperties `json:"properties"`
}

// View renders m for a GET. state is the observed state ("Ready", "Stopped", ...).
func (m *ManagedInstance) View(dnsSuffix, state string) InstanceJSON {
	capacity := m.VCores
	p := InstanceProperties{
		ProvisioningState:        m.ProvisioningState,
		State:                    state,
		FullyQualifiedDomainName: m.Name + "." + m.DNSZone + "." + dnsSuffix,
		AdministratorLogin:       &m.AdministratorLogin,
		VCores:                   &capacity,
		StorageSizeInGB:          ptr(m.StorageSizeInGB),
		Collation:                ptr(m.Collation),
		TimezoneID:               ptr(m.TimezoneID),
		DNSZone:                  ptr(m.DNSZone),
		LicenseType:              ptr(m.LicenseType),
		DatabaseFormat:           ptr(m.DatabaseFormat),
		BackupStorageRedundancy:  ptr(m.StorageRedundancy()),
		Host:                     m.Host,
		Port:                     m.Port,
	}
	if m.DNSZonePartner != "" {
		p.DNSZonePartner = ptr(m.DNSZonePartner)
	}
	if m.InstancePoolID != "" {
		p.InstancePoolID = ptr(m.InstancePoolID)
	}
	return InstanceJSON{
		ID: m.ID(), Name: m.Name, Type: TypeManagedInstance, Location: m.Location, Tags: m.Tags,
		Sku:        &Sku{Name: m.SkuName(), Tier: m.Tier, Family: m.Family, Capacity: &capacity},
		Properties: p,
	}
}

func ptr[T any](v T) *T { return &v }

// Tiers and the sku name prefixes that go with them.
var tiers = map[string]string{"GeneralPurpose": "GP", "BusinessCritical": "BC"}

func skuPrefix(tier string) string { return tiers[tier] }

// AllowedVCores are the vCore counts Azure accepts for Gen5 instances.
var AllowedVCores = []int{4, 8, 16, 24, 32, 40, 64, 80}

var licenseTypes = []string{"LicenseIncluded", "BasePrice"}

// BackupStorageRedundancies are Azure's values of backupStorageRedundancy.
var BackupStorageRedundancies = []string{"Local", "Zone", "Geo", "GeoZone"}

var databaseFormats = []string{"SQLServer2022", "SQLServer2025", "AlwaysUpToDate"}

var instanceNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateInstanceName applies Azure's rules for managed instance names: lowercase letters,
// digits and hyphens, 1 to 63 characters, no hyphen at either end. The name becomes a DNS label.
func ValidateInstanceName(name string) error {
	if !instanceNameRe.MatchString(name) {
		return fault.Invalid("InvalidResourceName",
			"The managed instance name '%s' is invalid. Use 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen.", name)
	}
	return nil
}

var rgNameRe = regexp.MustCompile(`^[-\w._()]{1,90}$`)

// ValidateResourceGroupName applies ARM's resource group name rules.
func ValidateResourceGroupName(rg string) error {
	if !rgNameRe.MatchString(rg) || strings.HasSuffix(rg, ".") {
		return fault.Invalid("InvalidResourceGroup",
			"The resource group name '%s' is invalid. Use up to 90 letters, digits, underscores, hyphens, periods (not at the end) and parentheses.", rg)
	}
	return nil
}

// Env is what validation needs to know about the deployment.
type Env struct {
	Regions []string
	// LocaleOK reports whether PostgreSQL on this machine can use the locale.
	LocaleOK func(string) bool
	// Lookup finds another instance by ARM id, for dnsZonePartner: nil when there is none
	// that the caller may read (one it may not read is answered as missing, in the same
	// words), an error when that could not be told.
	Lookup func(id string) (*ManagedInstance, error)
}

// NormalizeRegion turns "East US" or "eastus" into the region name the deployment uses, or "".
func NormalizeRegion(regions []string, loc string) string {
	want := strings.ToLower(strings.ReplaceAll(loc, " ", ""))
	for _, r := range regions {
		if strings.ToLower(strings.ReplaceAll(r, " ", "")) == want {
			return r
		}
	}
	return ""
}

// ApplyInstance validates a PUT body and applies it to cur (nil for a create), returning the
// record to store and the plaintext password when one was given (the caller turns it into a
// verifier and forgets it). Immutable properties may be repeated with their current value.
func ApplyInstance(env Env, cur *ManagedInstance, sub, rg, name string, body InstanceJSON) (*ManagedInstance, string, error) {
	create := cur == nil
	var m ManagedInstance
	if create {
		m = ManagedInstance{Subscription: sub, ResourceGroup: rg, Name: name,
			Tier: "GeneralPurpose", Family: DefaultFamily, VCores: DefaultVCores, StorageSizeInGB: DefaultStorageGB,
			Collation: DefaultCollation, TimezoneID: DefaultTimezone, LicenseType: DefaultLicenseType,
			DatabaseFormat: DefaultDatabaseFormat, BackupRetentionDays: DefaultBackupRetentionDays,
			BackupStorageRedundancy: DefaultBackupStorageRedundancy}
	} else {
		m = *cur
	}
	p := body.Properties

	if body.Location == "" {
		return nil, "", fault.Invalid("LocationRequired", "The location property is required. Use one of: %s.", strings.Join(env.Regions, ", "))
	}
	loc := NormalizeRegion(env.Regions, body.Location)
	if loc == "" {
		return nil, "", fault.Invalid("LocationNotAvailableForResourceType",
			"The provided location '%s' is not available for resource type '%s'. This deployment has: %s.", body.Location, TypeManagedInstance, strings.Join(env.Regions, ", "))
	}
	if create {
		m.Location = loc
	} else if loc != m.Location {
		return nil, "", immutable("location", m.Location)
	}
	if body.Tags != nil {
		for k, v := range body.Tags {
			if k == "" || len(k) > 512 || len(v) > 256 {
				return nil, "", fault.Invalid("InvalidTag", "Tag names must be 1 to 512 characters and values at most 256 characters; '%.40s' is not.", k)
			}
		}
		m.Tags = body.Tags
	}

	if err := applySku(&m, body.Sku, p.VCores); err != nil {
		return nil, "", err
	}
	if p.StorageSizeInGB != nil {
		s := *p.StorageSizeInGB
		if s < 32 || s > 16384 || s%32 != 0 {
			return nil, "", fault.Invalid("InvalidStorageSizeInGB",
				"storageSizeInGB %d is invalid: use a multiple of 32 from 32 to 16384.", s)
		}
		m.StorageSizeInGB = s
	}

	if p.Collation != nil && *p.Collation != m.Collation {
		if !create {
			return nil, "", immutable("collation", m.Collation)
		}
		c := *p.Collation
		if strings.HasPrefix(strings.ToUpper(c), "SQL_") || strings.Contains(c, "_CI_") || strings.Contains(c, "_CS_") {
			return nil, "", fault.Invalid("InvalidCollation",
				"'%s' is a SQL Server collation. Fog instances are PostgreSQL clusters and take a PostgreSQL locale such as C.UTF-8 or en_US.UTF-8 (see `locale -a` on the server).", c)
		}
		if env.LocaleOK != nil && !env.LocaleOK(c) {
			return nil, "", fault.Invalid("InvalidCollation",
				"The locale '%s' is not available to PostgreSQL on this machine. Use one listed by `locale -a`, for example C.UTF-8.", c)
		}
		m.Collation = c
	}
	if p.TimezoneID != nil && *p.TimezoneID != m.TimezoneID {
		if !create {
			return nil, "", immutable("timezoneId", m.TimezoneID)
		}
		if _, ok := IANATimezone(*p.TimezoneID); !ok {
			return nil, "", fault.Invalid("InvalidTimezone",
				"The timezoneId '%s' is not known. Use an IANA name such as Europe/Berlin or a Windows name such as 'Pacific Standard Time'.", *p.TimezoneID)
		}
		m.TimezoneID = *p.TimezoneID
	}

	if p.AdministratorLogin != nil && *p.AdministratorLogin != m.AdministratorLogin {
		if !create {
			return nil, "", immutable("administratorLogin", m.AdministratorLogin)
		}
		if err := validateLogin(*p.AdministratorLogin); err != nil {
			return nil, "", err
		}
		m.AdministratorLogin = *p.AdministratorLogin
	}
	if create && m.AdministratorLogin == "" {
		return nil, "", fault.Invalid("MissingAdministratorLogin", "administratorLogin is required when creating a managed instance.")
	}
	var password string
	if p.AdministratorLoginPassword != nil {
		password = *p.AdministratorLoginPassword
		if err := ValidatePassword(password, m.AdministratorLogin); err != nil {
			return nil, "", err
		}
	} else if create {
		return nil, "", fault.Invalid("MissingAdministratorLoginPassword", "administratorLoginPassword is required when creating a managed instance.")
	}

	if p.DNSZone != nil && (create || *p.DNSZone != m.DNSZone) {
		return nil, "", fault.Invalid("InvalidParameterValue", "dnsZone is assigned by Fog and cannot be set; use dnsZonePartner to share another instance's zone.")
	}
	if p.DNSZonePartner != nil && *p.DNSZonePartner != "" {
		if !create {
			if !strings.EqualFold(*p.DNSZonePartner, m.DNSZonePartner) {
				return nil, "", immutable("dnsZonePartner", m.DNSZonePartner)
			}
		} else {
			if _, err := arm.ParseInstanceID(*p.DNSZonePartner); err != nil {
				return nil, "", fault.Invalid("InvalidDnsZonePartner", "dnsZonePartner: %v.", err)
			}
			var partner *ManagedInstance
			if env.Lookup != nil {
				var aerr error
				if partner, aerr = env.Lookup(*p.DNSZonePartner); aerr != nil {
					return nil, "", aerr
				}
			}
			if partner == nil {
				return nil, "", fault.Invalid("InvalidDnsZonePartner",
					"dnsZonePartner '%s' names no managed instance of this deployment; create that instance first or fix the id.", *p.DNSZonePartner)
			}
			m.DNSZonePartner = partner.ID()
			m.DNSZone = partner.DNSZone
		}
	}
	if create && m.DNSZone == "" {
		m.DNSZone = newDNSZone()
	}

	if p.LicenseType != nil {
		lt, ok := oneOf(licenseTypes, *p.LicenseType)
		if !ok {
			return nil, "", fault.Invalid("InvalidLicenseType", "licenseType '%s' is invalid: use LicenseIncluded or BasePrice.", *p.LicenseType)
		}
		m.LicenseType = lt
	}
	if p.InstancePoolID != nil && *p.InstancePoolID != m.InstancePoolID {
		if !create {
			return nil, "", immutable("instancePoolId", m.InstancePoolID)
		}
		m.InstancePoolID = *p.InstancePoolID
	}
	if p.DatabaseFormat != nil {
		f, ok := oneOf(databaseFormats, *p.DatabaseFormat)
		if !ok {
			return nil, "", fault.Invalid("InvalidDatabaseFormat", "databaseFormat '%s' is invalid: use %s.", *p.DatabaseFormat, strings.Join(databaseFormats, ", "))
		}
		// Azure's update policy is one-way: AlwaysUpToDate cannot be reverted.
		if !create && m.DatabaseFormat == "AlwaysUpToDate" && f != "AlwaysUpToDate" {
			return nil, "", fault.Invalid("InvalidDatabaseFormatChange",
				"The update policy of '%s' is AlwaysUpToDate and cannot be changed back to %s.", m.Name, f)
		}
		m.DatabaseFormat = f
	}
	if p.BackupStorageRedundancy != nil {
		r, ok := oneOf(BackupStorageRedundancies, *p.BackupStorageRedundancy)
		if !ok {
			return nil, "", fault.Invalid("InvalidBackupStorageRedundancy",
				"backupStorageRedundancy '%s' is invalid: use Local, Zone, Geo or GeoZone (Geo when not sent).", *p.BackupStorageRedundancy)
		}
		m.BackupStorageRedundancy = r
	}
	return &m, password, nil
}

func applySku(m *ManagedInstance, sku *Sku, vcores *int) error {
	if sku != nil {
		if sku.Name != "" {
			prefix, family, ok := strings.Cut(sku.Name, "_")
			tier := ""
			for t, p := range tiers {
				if strings.EqualFold(p, prefix) {
					tier = t
				}
			}
			if !ok || tier == "" || !strings.EqualFold(family, DefaultFamily) {
				return fault.Invalid("InvalidSku", "The sku name '%s' is invalid: use GP_Gen5 (GeneralPurpose) or BC_Gen5 (BusinessCritical).", sku.Name)
			}
			m.Tier, m.Family = tier, DefaultFamily
		}
		if sku.Tier != "" {
			t, ok := oneOf([]string{"GeneralPurpose", "BusinessCritical"}, sku.Tier)
			if !ok {
				return fault.Invalid("InvalidSku", "The sku tier '%s' is invalid: use GeneralPurpose or BusinessCritical.", sku.Tier)
			}
			if sku.Name != "" && t != m.Tier {
				return fault.Invalid("InvalidSku", "The sku name '%s' and tier '%s' disagree.", sku.Name, sku.Tier)
			}
			m.Tier = t
		}
		if sku.Family != "" && !strings.EqualFold(sku.Family, DefaultFamily) {
			return fault.Invalid("InvalidSku", "The hardware family '%s' is invalid: use Gen5.", sku.Family)
		}
		if sku.Capacity != nil {
			if vcores != nil && *vcores != *sku.Capacity {
				return fault.Invalid("InvalidSku", "sku.capacity %d and vCores %d disagree; send one of them.", *sku.Capacity, *vcores)
			}
			vcores = sku.Capacity
		}
	}
	if vcores != nil {
		if !slices.Contains(AllowedVCores, *vcores) {
			return fault.Invalid("InvalidVCores", "vCores %d is invalid: use one of %v.", *vcores, AllowedVCores)
		}
		m.VCores = *vcores
	}
	return nil
}

func oneOf(allowed []string, v string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, true
		}
	}
	return "", false
}

func immutable(prop, cur string) error {
	return fault.Invalid("PropertyChangeNotSupported",
		"The property '%s' cannot be changed after the managed instance is created (current value '%s'). Create a new instance instead.", prop, cur)
}

var loginRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// reservedLogins cannot be an instance's administratorLogin: PostgreSQL's bootstrap
// superuser's usual name and the names a role specification reads as keywords (PUBLIC, NONE,
// CURRENT_USER, SESSION_USER, CURRENT_ROLE: GRANT ... TO public grants everyone), and the
// system names Azure SQL refuses for its server admin (admin, administrator, sa, root,
// dbmanager, loginmanager, dbo, guest, public).
var reservedLogins = []string{
	"postgres", "public", "none", "current_user", "session_user", "current_role",
	"admin", "administrator", "sa", "root", "dbmanager", "loginmanager", "dbo", "guest",
}

// reservedLoginPrefixes: PostgreSQL reserves pg_ for its predefined roles (CREATE ROLE
// refuses it), and Fog's own roles in every instance start with fog_ (fog_system, the
// bootstrap superuser; fog_admin, the role the admin login is a member of; fog_replication;
// and those to come). An admin login named like one of them would be that role: creating the
// instance fails, or the admin takes the role's rights.
var reservedLoginPrefixes = []struct{ prefix, why string }{
	{"pg_", "names starting with 'pg_' are reserved by PostgreSQL for its predefined roles"},
	{"fog_", "names starting with 'fog_' are Fog's own roles in every instance"},
}

// validateLogin checks an administratorLogin. Names compare case-insensitively: Fog quotes the
// login, so "Fog_Admin" would be a role of its own, but PostgreSQL folds every unquoted
// identifier to lower case, and GRANT ... TO Fog_Admin in a tenant's script means fog_admin.
func validateLogin(l string) error {
	if !loginRe.MatchString(l) {
		return fault.Invalid("InvalidLoginName",
			"The administratorLogin '%s' is invalid: use 1 to 63 letters, digits and underscores, starting with a letter or underscore.", l)
	}
	lower := strings.ToLower(l)
	why := ""
	if slices.Contains(reservedLogins, lower) {
		why = "it is a system name"
	}
	prefixes := make([]string, 0, len(reservedLoginPrefixes))
	for _, p := range reservedLoginPrefixes {
		prefixes = append(prefixes, "'"+p.prefix+"'")
		if why == "" && strings.HasPrefix(lower, p.prefix) {
			why = p.why
		}
	}
	if why == "" {
		return nil
	}
	return fault.Invalid("InvalidLoginName",
		"The administratorLogin '%s' is reserved: %s. The login cannot be a system name (%s) or start with %s; choose another name, such as 'miadmin' or your team's name.",
		l, why, strings.Join(reservedLogins, ", "), strings.Join(prefixes, " or "))
}

// ValidatePassword applies Azure SQL Managed Instance's rule: 16 to 128 characters, with
// characters from three of uppercase, lowercase, digits and symbols, not containing the login.
// The message never repeats the password.
func ValidatePassword(pw, login string) error {
	n := len([]rune(pw))
	classes := 0
	for _, f := range []func(rune) bool{
		func(r rune) bool { return r >= 'A' && r <= 'Z' },
		func(r rune) bool { return r >= 'a' && r <= 'z' },
		func(r rune) bool { return r >= '0' && r <= '9' },
		func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') },
	} {
		if strings.IndexFunc(pw, f) >= 0 {
			classes++
		}
	}
	if n < 16 || n > 128 || classes < 3 || (login != "" && strings.Contains(strings.ToLower(pw), strings.ToLower(login))) {
		return fault.Invalid("InvalidPassword",
			"administratorLoginPassword is not complex enough: use 16 to 128 characters from at least three of uppercase letters, lowercase letters, digits and symbols, and do not include the login name.")
	}
	for _, r := range pw {
		if r < 0x20 || r == 0x7f {
			return fault.Invalid("InvalidPassword", "administratorLoginPassword must not contain control characters.")
		}
	}
	return nil
}

func newDNSZone() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewUID returns a random id for internal use (data directories, operations).
func NewUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// NotFound is the not-found error (ResourceNotFound, fault.ErrNotFound) for a resource.
func NotFound(typ, name string) error {
	return fault.New(fault.NotFound, "ResourceNotFound",
		"The requested resource of type '%s' with name '%s' was not found.", typ, name)
}
