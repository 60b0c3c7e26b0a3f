//! Relations as the system caches see them: names rebuilt from OIDs, what
//! kind of table an OID is now, and plan invalidation.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::spi::quote_qualified_identifier;

/// A relation name with both parts, quoted for splicing into SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn quoted(&self) -> String {
        quote_qualified_identifier(&self.schema, &self.name)
    }
}

impl std::fmt::Display for QualifiedName {
    /// For messages: quoted as SQL would need it, so a name with spaces or
    /// quotes is unambiguous (`"My Schema"."Ev""ents"`, `public.events`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// The current name of relation `oid`, rebuilt from the catalog (never
/// from text stored earlier); `None` if it does not exist.
pub fn qualified_name(oid: pg_sys::Oid) -> Option<QualifiedName> {
    unsafe {
        let name = pg_sys::get_rel_name(oid);
        if name.is_null() {
            return None;
        }
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        if schema.is_null() {
            return None;
        }
        Some(QualifiedName {
            schema: CStr::from_ptr(schema).to_string_lossy().into_owned(),
            name: CStr::from_ptr(name).to_string_lossy().into_owned(),
        })
    }
}

/// What a plain table (a shadow, a partition) is right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableState {
    /// Dropped, or not a plain table any more.
    Gone,
    /// A table of its own, not a partition.
    Standalone,
    /// A partition of some table.
    Attached,
}

pub fn table_state(oid: pg_sys::Oid) -> TableState {
    if unsafe { pg_sys::get_rel_relkind(oid) } as u8 != pg_sys::RELKIND_RELATION {
        TableState::Gone
    } else if unsafe { pg_sys::get_rel_relispartition(oid) } {
        TableState::Attached
    } else {
        TableState::Standalone
    }
}

/// The owner of relation `oid`, `None` if there is none.
pub fn owner(oid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as _,
            pg_sys::Datum::from(oid),
        );
        if tuple.is_null() {
            return None;
        }
        let owner = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}

/// Whether a relation (of any kind) with this OID exists.
pub fn exists(oid: pg_sys::Oid) -> bool {
    let kind = unsafe { pg_sys::get_rel_relkind(oid) };
    kind != 0
}

/// Whether `oid` is a partition of some table.
pub fn is_partition(oid: pg_sys::Oid) -> bool {
    unsafe { pg_sys::get_rel_relispartition(oid) }
}

/// Whether `oid` is a partitioned table.
pub fn is_partitioned_table(oid: pg_sys::Oid) -> bool {
    let kind = unsafe { pg_sys::get_rel_relkind(oid) };
    kind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE
}

/// Makes every backend re-plan cached plans that involve `oid`: a relcache
/// invalidation, sent through the shared invalidation queue at commit.
pub fn invalidate_plans(oid: pg_sys::Oid) {
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
}

fn relation_address(oid: pg_sys::Oid) -> pg_sys::ObjectAddress {
    pg_sys::ObjectAddress {
        classId: pg_sys::RelationRelationId,
        objectId: oid,
        objectSubId: 0,
    }
}

/// Records that `dependent` is dropped with `referenced` (an automatic
/// dependency, as an index has on its table): `DROP TABLE referenced`
/// then takes `dependent` along, without CASCADE, and `dependent` can
/// still be dropped on its own.
pub fn drop_along_with(dependent: pg_sys::Oid, referenced: pg_sys::Oid) {
    let (dependent, referenced) = (relation_address(dependent), relation_address(referenced));
    unsafe {
        pg_sys::recordDependencyOn(
            &dependent,
            &referenced,
            pg_sys::DependencyType::DEPENDENCY_AUTO,
        );
        pg_sys::CommandCounterIncrement();
    }
}

/// After `ATTACH PARTITION` of a table `drop_along_with` was recorded for:
/// PostgreSQL records the same automatic dependency of a partition on its
/// parent, so the pair now has two identical rows. One is kept, as for any
/// partition (DETACH removes it; the detached table then outlives the parent).
pub fn keep_one_dependency(dependent: pg_sys::Oid, referenced: pg_sys::Oid) {
    unsafe {
        pg_sys::deleteDependencyRecordsForSpecific(
            pg_sys::RelationRelationId,
            dependent,
            pg_sys::DependencyType::DEPENDENCY_AUTO as std::ffi::c_char,
            pg_sys::RelationRelationId,
            referenced,
        );
    }
    drop_along_with(dependent, referenced);
}

/// The privileges `current_user_may` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    Select,
    Insert,
}

/// Whether the current user holds `privilege` on relation `oid` (as a
/// statement would be checked, before it runs).
pub fn current_user_may(oid: pg_sys::Oid, privilege: Privilege) -> bool {
    let mode = match privilege {
        Privilege::Select => pg_sys::ACL_SELECT,
        Privilege::Insert => pg_sys::ACL_INSERT,
    } as pg_sys::AclMode;
    // A relation dropped meanwhile (a table dropped while its rows moved,
    // its override not withdrawn yet) is one nobody may use: no error.
    let mut missing = false;
    unsafe {
        pg_sys::pg_class_aclcheck_ext(oid, pg_sys::GetUserId(), mode, &mut missing)
            == pg_sys::AclResult::ACLCHECK_OK
            && !missing
    }
}

/// Whether row-level security limits the current user to some rows of
/// relation `oid` (`row_security_active()`; a relation gone limits nothing).
pub fn row_security_limits_current_user(oid: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::check_enable_rls(oid, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as std::ffi::c_int
    }
}

/// `oid::regclass::text`: the name as `regclass` prints it (qualified when
/// not on the search path), `None` for an invalid OID.
pub fn regclass_text(oid: pg_sys::Oid) -> crate::error::Result<Option<String>> {
    Ok(crate::pg::spi::select_one::<String>(
        "SELECT $1::pg_catalog.oid::pg_catalog.regclass::text",
        &[oid.into()],
    )?)
}
