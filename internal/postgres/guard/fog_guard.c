/*
 * fog_guard: the boundary between an instance's admin and the host, for PostgreSQL 15 and
 * later. The admin is not a superuser but holds CREATEROLE, which in PostgreSQL 15 can grant
 * membership in any non-superuser role, predefined ones included: pg_execute_server_program
 * (COPY ... FROM PROGRAM) and pg_read_server_files / pg_write_server_files (any file the
 * server's OS user can reach). This utility hook refuses, to every non-superuser:
 *   - granting those roles, or Fog's own roles, to anyone (GRANT, CREATE ROLE ... IN ROLE /
 *     ROLE / ADMIN, ALTER GROUP ... ADD USER);
 *   - altering, renaming or dropping Fog's own roles (fog_system, fog_replication, fog_admin);
 * and lets members of fog_admin create the extensions in fog_guard.extensions (a list Fog
 * sets), running CREATE EXTENSION as the bootstrap superuser, as managed services do.
 * Everything else goes to PostgreSQL unchanged. Loaded by shared_preload_libraries.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static ProcessUtility_hook_type prev_utility = NULL;
static char *allowed_extensions = NULL;

static const char *const protected_roles[] = {
	"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files",
	"fog_system", "fog_replication", "fog_admin", NULL
};

/* Roles no non-superuser may alter, rename or drop. */
static const char *const fog_roles[] = {"fog_system", "fog_replication", "fog_admin", NULL};

static bool
in_list(const char *name, const char *const *list)
{
	for (int i = 0; list[i] != NULL; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

static void
refuse_grant(const char *role)
{
	/* fog_admin may be granted by its members (as rds_superuser may): only the others. */
	if (strcmp(role, "fog_admin") == 0)
		return;
	if (in_list(role, protected_roles))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to grant role \"%s\"", role),
				 errdetail("Fog keeps the server's files and programs out of reach of SQL: \"%s\" is granted by Fog alone.", role)));
}

static void
refuse_alter(const char *role, const char *what)
{
	if (in_list(role, fog_roles))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s role \"%s\"", what, role),
				 errdetail("\"%s\" is managed by Fog.", role)));
}

static const char *
rolespec_name(RoleSpec *spec)
{
	if (spec->roletype == ROLESPEC_CSTRING)
		return spec->rolename;
	return NULL;
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

static void
guard_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			  ProcessUtilityContext context, ParamListInfo params,
			  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *node = pstmt->utilityStmt;
	bool		elevate = false;

	if (!superuser())
	{
		ListCell   *lc;

		switch (nodeTag(node))
		{
			case T_GrantRoleStmt:
				{
					GrantRoleStmt *s = (GrantRoleStmt *) node;

					if (s->is_grant)
						foreach(lc, s->granted_roles)
						{
							AccessPriv *p = (AccessPriv *) lfirst(lc);

							if (p->priv_name)
								refuse_grant(p->priv_name);
						}
					else
						foreach(lc, s->grantee_roles)
						{
							const char *n = rolespec_name((RoleSpec *) lfirst(lc));

							if (n)
								refuse_alter(n, "revoke a role from");
						}
					break;
				}
			case T_CreateRoleStmt:
				{
					CreateRoleStmt *s = (CreateRoleStmt *) node;

					foreach(lc, s->options)
					{
						DefElem    *d = (DefElem *) lfirst(lc);
						ListCell   *m;

						if (strcmp(d->defname, "addroleto") == 0)
							foreach(m, (List *) d->arg)
							{
								const char *n = rolespec_name((RoleSpec *) lfirst(m));

								if (n)
									refuse_grant(n);
							}
					}
					break;
				}
			case T_AlterRoleStmt:
				{
					AlterRoleStmt *s = (AlterRoleStmt *) node;
					const char *n = rolespec_name(s->role);

					if (n)
					{
						refuse_alter(n, "alter");
						/* ALTER GROUP protected ADD USER x */
						foreach(lc, s->options)
						{
							DefElem    *d = (DefElem *) lfirst(lc);

							if (strcmp(d->defname, "rolemembers") == 0 && s->action > 0)
								refuse_grant(n);
						}
					}
					break;
				}
			case T_AlterRoleSetStmt:
				{
					AlterRoleSetStmt *s = (AlterRoleSetStmt *) node;
					const char *n = s->role ? rolespec_name(s->role) : NULL;

					if (n)
						refuse_alter(n, "alter");
					break;
				}
			case T_DropRoleStmt:
				foreach(lc, ((DropRoleStmt *) node)->roles)
				{
					const char *n = rolespec_name((RoleSpec *) lfirst(lc));

					if (n)
						refuse_alter(n, "drop");
				}
				break;
			case T_RenameStmt:
				{
					RenameStmt *s = (RenameStmt *) node;

					if (s->renameType == OBJECT_ROLE)
					{
						refuse_alter(s->subname, "rename");
						refuse_alter(s->newname, "rename a role to");
					}
					break;
				}
			case T_CreateExtensionStmt:
				{
					CreateExtensionStmt *s = (CreateExtensionStmt *) node;
					Oid			admin = get_role_oid("fog_admin", true);

					if (extension_allowed(s->extname) && OidIsValid(admin) &&
						has_privs_of_role(GetUserId(), admin))
						elevate = true;
					break;
				}
			default:
				break;
		}
	}

	if (elevate)
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
