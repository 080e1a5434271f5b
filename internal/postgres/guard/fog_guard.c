/*
 * fog_guard: the boundary between an instance's admin and the host, for PostgreSQL 15 and
 * later. The admin is not a superuser but holds CREATEROLE, which in PostgreSQL 15 can grant
 * membership in any non-superuser role, predefined ones included: pg_execute_server_program
 * (COPY ... FROM PROGRAM) and pg_read_server_files / pg_write_server_files (any file the
 * server's OS user can reach), and alter any role that is neither a superuser nor a
 * replication role (src/backend/commands/user.c). This utility hook refuses, to every
 * non-superuser:
 *   - granting or revoking those roles, Fog's own roles other than fog_admin, a superuser, or
 *     a role that is a member of one of them (GRANT, REVOKE, CREATE ROLE ... IN ROLE);
 *   - any statement that changes a protected role -- Fog's roles (fog_system,
 *     fog_replication, fog_admin, fog_monitor, fog_backup), the three roles above and every
 *     superuser: ALTER ROLE / USER / GROUP, ALTER ROLE ... SET, DROP, RENAME, COMMENT,
 *     SECURITY LABEL, making it a member of something or granting it privileges (GRANT ... TO, CREATE ROLE
 *     ... ROLE / ADMIN, ALTER GROUP ... ADD USER, ALTER DEFAULT PRIVILEGES), making it an
 *     owner (ALTER ... OWNER TO, REASSIGN OWNED ... TO, CREATE SCHEMA AUTHORIZATION, CREATE
 *     DATABASE ... OWNER), acting on what it owns (DROP OWNED BY, REASSIGN OWNED BY), or
 *     giving it a user mapping; and creating a role with a Fog role's name;
 * and lets members of fog_admin create the extensions in fog_guard.extensions (a list Fog
 * sets), running CREATE EXTENSION as the bootstrap superuser, as managed services do; the
 * foreign-data wrappers such an extension brings (postgres_fdw, dblink_fdw) are granted to
 * fog_admin, so the admin can define servers with them.
 *
 * Every role is decided on its OID, never on how the statement spelt it: CURRENT_USER,
 * CURRENT_ROLE and SESSION_USER name whatever role the session is (after SET ROLE fog_admin,
 * CURRENT_USER is fog_admin), and a quoted or escaped name is the name PostgreSQL will look
 * up. Everything else goes to PostgreSQL unchanged. Loaded by shared_preload_libraries.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/varlena.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static ProcessUtility_hook_type prev_utility = NULL;
static char *allowed_extensions = NULL;

#define ADMIN_ROLE "fog_admin"

/* Fog's own roles: no non-superuser may change them or take their names. */
static const char *const fog_roles[] = {
	"fog_system", "fog_replication", ADMIN_ROLE, "fog_monitor", "fog_backup", NULL
};

/* The predefined roles that reach the host's files and programs. */
static const char *const host_roles[] = {
	"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files", NULL
};

static bool
oid_in(Oid roleid, const char *const *names)
{
	for (int i = 0; names[i] != NULL; i++)
		if (roleid == get_role_oid(names[i], true))
			return true;
	return false;
}

static bool
name_in(const char *name, const char *const *names)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

/*
 * A role no non-superuser may change: Fog's, the host roles, and every superuser (PostgreSQL
 * itself keeps most of a superuser from CREATEROLE, but not, in 15, being made a member of
 * another role: AddRoleMems checks only the granted role).
 */
static bool
protected_role(Oid roleid)
{
	if (!OidIsValid(roleid))
		return false;
	return roleid == BOOTSTRAP_SUPERUSERID || superuser_arg(roleid) ||
		oid_in(roleid, fog_roles) || oid_in(roleid, host_roles);
}

/*
 * A role no non-superuser may grant or revoke: a protected one, or one that is a member of a
 * protected one (it carries its rights), except fog_admin, which its members may give on to
 * the roles they create as rds_superuser's may (fog_admin is a member of nothing protected).
 * WITH ADMIN OPTION too: in PostgreSQL 15 CREATEROLE alone grants and revokes any
 * non-superuser role (user.c, AddRoleMems / DelRoleMems), so the option adds nothing, and a
 * member of fog_admin has only the tenant's rights to pass on. Revoking fog_admin from the
 * login Fog made is the tenant's own doing, which EnsureAdmin undoes; the guard does not
 * know that login. What stays refused is changing fog_admin itself or what it is a member of.
 */
static bool
ungrantable_role(Oid roleid)
{
	Oid			admin = get_role_oid(ADMIN_ROLE, true);

	if (!OidIsValid(roleid))
		return false;
	if (roleid == admin)
		return false;
	if (protected_role(roleid))
		return true;
	for (int i = 0; fog_roles[i] != NULL; i++)
	{
		Oid			r = get_role_oid(fog_roles[i], true);

		if (OidIsValid(r) && r != admin && is_member_of_role_nosuper(roleid, r))
			return true;
	}
	for (int i = 0; host_roles[i] != NULL; i++)
	{
		Oid			r = get_role_oid(host_roles[i], true);

		if (OidIsValid(r) && is_member_of_role_nosuper(roleid, r))
			return true;
	}
	return false;
}

/*
 * The role a RoleSpec names, or InvalidOid when it names none (yet): PUBLIC is no role
 * (get_rolespec_oid raises "role public does not exist" for it, acl.c), and a missing name
 * is PostgreSQL's to report, or a role CREATE ROLE is about to make.
 */
static Oid
rolespec_oid(const RoleSpec *spec)
{
	if (spec == NULL || spec->roletype == ROLESPEC_PUBLIC)
		return InvalidOid;
	return get_rolespec_oid(spec, true);
}

static const char *
role_name(Oid roleid)
{
	const char *n = GetUserNameFromId(roleid, true);

	return n ? n : "?";
}

static void
refuse(Oid roleid, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s role \"%s\"", what, role_name(roleid)),
			 errdetail("Fog's roles, superusers and the roles that reach the server's files and programs are changed by Fog alone.")));
}

/* Refuses when spec names a protected role. */
static void
check_target(const RoleSpec *spec, const char *what)
{
	Oid			r = rolespec_oid(spec);

	if (protected_role(r))
		refuse(r, what);
}

static void
check_targets(List *specs, const char *what)
{
	ListCell   *lc;

	foreach(lc, specs)
		check_target((RoleSpec *) lfirst(lc), what);
}

/* Refuses when a role to be granted or revoked is ungrantable. */
static void
check_granted(Oid roleid, const char *what)
{
	if (ungrantable_role(roleid))
		refuse(roleid, what);
}

/* A new role, or a renamed one, must not take a Fog role's name (one Fog has yet to create). */
static void
check_new_name(const char *name)
{
	if (name != NULL && name_in(name, fog_roles))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create role \"%s\"", name),
				 errdetail("\"%s\" is a name of Fog's own roles.", name)));
}

/*
 * A database's name must hold no control character: pgBackRest writes the names into its
 * backup manifest unquoted, and a line break there makes every backup of the instance
 * unrestorable while the backup itself reports success.
 */
static void
check_database_name(const char *name)
{
	const unsigned char *p;

	if (name == NULL)
		return;
	for (p = (const unsigned char *) name; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("database names may not hold control characters such as line breaks"),
					 errdetail("Fog's backups could not restore a database of such a name.")));
	}
}

static bool
extension_allowed(const char *name)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (allowed_extensions == NULL || allowed_extensions[0] == '\0')
		return false;
	copy = pstrdup(allowed_extensions);
	if (!SplitIdentifierString(copy, ',', &names))
		return false;
	foreach(lc, names)
	{
		if (strcmp((const char *) lfirst(lc), name) == 0)
			found = true;
	}
	return found;
}

/*
 * Grants USAGE on the foreign-data wrappers that belong to extension extname to fog_admin.
 * The extension was created as the bootstrap superuser, so its wrappers are the bootstrap
 * superuser's and, without this, no admin could CREATE SERVER with them (USAGE on the
 * wrapper, foreigncmds.c). Runs elevated, in the transaction that created them. The grant is
 * built as a node, not SQL text: nothing of the session (search_path, operators) takes part.
 * Without GRANT OPTION: an admin gives its users USAGE on the servers it creates instead.
 */
static void
grant_wrappers(const char *extname)
{
	Oid			ext = get_extension_oid(extname, true);
	Relation	rel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *wrappers = NIL;
	GrantStmt  *grant;
	AccessPriv *usage;
	RoleSpec   *grantee;

	if (!OidIsValid(ext) || !OidIsValid(get_role_oid(ADMIN_ROLE, true)))
		return;
	/* The extension script's pg_depend rows, made by this command, must be visible. */
	CommandCounterIncrement();
	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->classid == ForeignDataWrapperRelationId && dep->deptype == DEPENDENCY_EXTENSION)
			wrappers = lappend(wrappers, makeString(pstrdup(GetForeignDataWrapper(dep->objid)->fdwname)));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (wrappers == NIL)
		return;

	usage = makeNode(AccessPriv);
	usage->priv_name = pstrdup("usage");
	grantee = makeNode(RoleSpec);
	grantee->roletype = ROLESPEC_CSTRING;
	grantee->rolename = pstrdup(ADMIN_ROLE);
	grantee->location = -1;
	grant = makeNode(GrantStmt);
	grant->is_grant = true;
	grant->targtype = ACL_TARGET_OBJECT;
	grant->objtype = OBJECT_FDW;
	grant->objects = wrappers;
	grant->privileges = list_make1(usage);
	grant->grantees = list_make1(grantee);
	grant->grant_option = false;
	grant->behavior = DROP_RESTRICT;
	ExecuteGrantStmt(grant);
}

/* The role a DefElem's value names (CREATE DATABASE ... OWNER x), or InvalidOid. */
static Oid
defelem_role(DefElem *d)
{
	if (d->arg == NULL)
		return InvalidOid;
	if (IsA(d->arg, RoleSpec))
		return rolespec_oid((RoleSpec *) d->arg);
	return get_role_oid(defGetString(d), true);
}

/*
 * Refuses, with an error, what changes a protected role (see the top of this file); called
 * for non-superusers only. Returns whether the statement is a CREATE EXTENSION of the list,
 * by a member of fog_admin, to run elevated.
 */
static bool
check_statement(Node *node)
{
	ListCell   *lc;

	switch (nodeTag(node))
	{
		case T_GrantRoleStmt:
			{
				GrantRoleStmt *s = (GrantRoleStmt *) node;

				foreach(lc, s->granted_roles)
				{
					AccessPriv *p = (AccessPriv *) lfirst(lc);

					/* A NULL name (ALL PRIVILEGES with columns) is PostgreSQL's to refuse. */
					if (p->priv_name)
						check_granted(get_role_oid(p->priv_name, true),
									  s->is_grant ? "grant" : "revoke");
				}
				check_targets(s->grantee_roles,
							  s->is_grant ? "grant a role to" : "revoke a role from");
				check_target(s->grantor, "grant as");
				break;
			}
		case T_GrantStmt:
			{
				GrantStmt  *s = (GrantStmt *) node;

				check_targets(s->grantees, s->is_grant ? "grant privileges to" : "revoke privileges from");
				check_target(s->grantor, "grant as");
				break;
			}
		case T_AlterDefaultPrivilegesStmt:
			{
				AlterDefaultPrivilegesStmt *s = (AlterDefaultPrivilegesStmt *) node;

				foreach(lc, s->options)
				{
					DefElem    *d = (DefElem *) lfirst(lc);

					if (strcmp(d->defname, "roles") == 0)
						check_targets((List *) d->arg, "alter default privileges of");
				}
				if (s->action)
					check_targets(s->action->grantees, "alter default privileges for");
				break;
			}
		case T_CreateRoleStmt:
			{
				CreateRoleStmt *s = (CreateRoleStmt *) node;

				check_new_name(s->role);
				foreach(lc, s->options)
				{
					DefElem    *d = (DefElem *) lfirst(lc);
					ListCell   *m;

					/* IN ROLE / IN GROUP: the new role becomes a member of these. */
					if (strcmp(d->defname, "addroleto") == 0)
						foreach(m, (List *) d->arg)
							check_granted(rolespec_oid((RoleSpec *) lfirst(m)), "grant");
					/* ROLE / USER / ADMIN: these become members of the new role. */
					if (strcmp(d->defname, "rolemembers") == 0 ||
						strcmp(d->defname, "adminmembers") == 0)
						check_targets((List *) d->arg, "grant a role to");
				}
				break;
			}
		case T_AlterRoleStmt:
			{
				AlterRoleStmt *s = (AlterRoleStmt *) node;

				/*
				 * ALTER ROLE, and ALTER GROUP ... ADD / DROP USER (action +1 / -1, the
				 * members in "rolemembers"). ALTER GROUP fog_admin is refused too: GRANT is
				 * the one way to give fog_admin.
				 */
				check_target(s->role, "alter");
				foreach(lc, s->options)
				{
					DefElem    *d = (DefElem *) lfirst(lc);

					if (strcmp(d->defname, "rolemembers") == 0)
						check_targets((List *) d->arg,
									  s->action > 0 ? "grant a role to" : "revoke a role from");
				}
				break;
			}
		case T_AlterRoleSetStmt:
			/*
			 * ALTER ROLE ALL (role NULL) is PostgreSQL's: superuser alone, or with IN
			 * DATABASE the database's owner, as ALTER DATABASE ... SET (user.c,
			 * AlterRoleSet).
			 */
			check_target(((AlterRoleSetStmt *) node)->role, "alter");
			break;
		case T_DropRoleStmt:
			check_targets(((DropRoleStmt *) node)->roles, "drop");
			break;
		case T_RenameStmt:
			{
				RenameStmt *s = (RenameStmt *) node;

				if (s->renameType == OBJECT_DATABASE)
					check_database_name(s->newname);
				if (s->renameType == OBJECT_ROLE)
				{
					Oid			r = get_role_oid(s->subname, true);

					if (protected_role(r))
						refuse(r, "rename");
					check_new_name(s->newname);
				}
				break;
			}
		case T_CommentStmt:
			{
				CommentStmt *s = (CommentStmt *) node;

				if (s->objtype == OBJECT_ROLE && s->object && IsA(s->object, String))
				{
					Oid			r = get_role_oid(strVal(s->object), true);

					if (protected_role(r))
						refuse(r, "comment on");
				}
				break;
			}
		case T_SecLabelStmt:
			{
				SecLabelStmt *s = (SecLabelStmt *) node;

				if (s->objtype == OBJECT_ROLE && s->object && IsA(s->object, String))
				{
					Oid			r = get_role_oid(strVal(s->object), true);

					if (protected_role(r))
						refuse(r, "label");
				}
				break;
			}
		case T_DropOwnedStmt:
			check_targets(((DropOwnedStmt *) node)->roles, "drop what is owned by");
			break;
		case T_ReassignOwnedStmt:
			check_targets(((ReassignOwnedStmt *) node)->roles, "reassign what is owned by");
			check_target(((ReassignOwnedStmt *) node)->newrole, "reassign objects to");
			break;
		case T_AlterOwnerStmt:
			check_target(((AlterOwnerStmt *) node)->newowner, "give objects to");
			break;
		case T_AlterTableStmt:
			/* ALTER TABLE / VIEW / SEQUENCE / ... OWNER TO is a subcommand (tablecmds.c). */
			foreach(lc, ((AlterTableStmt *) node)->cmds)
			{
				AlterTableCmd *c = (AlterTableCmd *) lfirst(lc);

				if (c->subtype == AT_ChangeOwner)
					check_target(c->newowner, "give objects to");
			}
			break;
		case T_CreateSchemaStmt:
			check_target(((CreateSchemaStmt *) node)->authrole, "give objects to");
			break;
		case T_CreatedbStmt:
			check_database_name(((CreatedbStmt *) node)->dbname);
			foreach(lc, ((CreatedbStmt *) node)->options)
			{
				DefElem    *d = (DefElem *) lfirst(lc);

				if (strcmp(d->defname, "owner") == 0)
				{
					Oid			r = defelem_role(d);

					if (protected_role(r))
						refuse(r, "give objects to");
				}
			}
			break;
		case T_CreateUserMappingStmt:
			check_target(((CreateUserMappingStmt *) node)->user, "map");
			break;
		case T_AlterUserMappingStmt:
			check_target(((AlterUserMappingStmt *) node)->user, "map");
			break;
		case T_DropUserMappingStmt:
			check_target(((DropUserMappingStmt *) node)->user, "map");
			break;
		case T_CreateExtensionStmt:
			{
				CreateExtensionStmt *s = (CreateExtensionStmt *) node;
				Oid			admin = get_role_oid(ADMIN_ROLE, true);

				return extension_allowed(s->extname) && OidIsValid(admin) &&
					has_privs_of_role(GetUserId(), admin);
			}
		default:
			break;
	}
	return false;
}

static void
guard_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			  ProcessUtilityContext context, ParamListInfo params,
			  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *node = pstmt->utilityStmt;

	/*
	 * superuser() is the current user's, so a statement run as a superuser on the admin's
	 * behalf (the elevated CREATE EXTENSION's script, below) is not checked again.
	 * Transaction control changes no role, and ROLLBACK may come in an aborted transaction,
	 * where no catalog may be read: it is not looked at.
	 */
	if (!IsA(node, TransactionStmt) && !superuser() && check_statement(node) &&
		IsA(node, CreateExtensionStmt))
	{
		Oid			save_userid;
		int			save_sec_context;

		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		PG_TRY();
		{
			if (prev_utility)
				prev_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
			else
				standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
			grant_wrappers(((CreateExtensionStmt *) node)->extname);
		}
		PG_FINALLY();
		{
			SetUserIdAndSecContext(save_userid, save_sec_context);
		}
		PG_END_TRY();
		return;
	}

	if (prev_utility)
		prev_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
_PG_init(void)
{
	DefineCustomStringVariable("fog_guard.extensions",
							   "Extensions members of fog_admin may create.",
							   NULL, &allowed_extensions, "",
							   PGC_SIGHUP, GUC_LIST_INPUT, NULL, NULL, NULL);
	MarkGUCPrefixReserved("fog_guard");
	prev_utility = ProcessUtility_hook;
	ProcessUtility_hook = guard_utility;
}
