//! The three roles and six permissions of docs/API.md, ordered by rank.

use serde::{Deserialize, Serialize};

use crate::error::{AppError, FieldError};

/// A role. The derived order is the rank: `Viewer < Maintainer < Admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Maintainer,
    Admin,
}

/// A permission, as carried in tokens and checked by routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Create,
    Update,
    Delete,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Maintainer, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "viewer" => Some(Role::Viewer),
            "maintainer" => Some(Role::Maintainer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Role::Viewer => "Read-only access",
            Role::Maintainer => "Can create, update and delete resources",
            Role::Admin => "Full access to all resources and operations",
        }
    }

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Viewer => &[Read],
            Role::Maintainer => &[Read, Write, Create, Update, Delete],
            Role::Admin => &[Read, Write, Create, Update, Delete, Admin],
        }
    }
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Create => "create",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Admin => "admin",
        }
    }
}

/// The union of the permissions of `roles`, in a stable order.
pub fn permissions_of(roles: &[Role]) -> Vec<Permission> {
    let top = roles.iter().max().copied();
    top.map(|r| r.permissions().to_vec()).unwrap_or_default()
}

/// Roles as stored: sorted by rank (highest first), without duplicates.
/// Role names from a request, each one known, or a validation error naming `field`.
pub fn parse_list(field: &str, names: &[String]) -> Result<Vec<Role>, AppError> {
    names
        .iter()
        .map(|name| {
            Role::parse(name).ok_or_else(|| {
                AppError::Validation(vec![FieldError::new(
                    field,
                    format!("unknown role `{name}` (admin, maintainer, viewer)"),
                )])
            })
        })
        .collect()
}

pub fn normalize(mut roles: Vec<Role>) -> Vec<Role> {
    roles.sort_by(|a, b| b.cmp(a));
    roles.dedup();
    roles
}

/// An API key narrowed to `key_roles` acts with the rank of its highest role, never above
/// its owner's highest: ranks include the ones below them, so an admin's key narrowed to
/// `viewer` is a viewer. The owner's roles below that rank are kept.
pub fn narrow(owner: &[Role], key_roles: Option<&[Role]>) -> Vec<Role> {
    let Some(key_roles) = key_roles else {
        return owner.to_vec();
    };
    let (Some(cap), Some(top)) = (key_roles.iter().max(), owner.iter().max()) else {
        return Vec::new();
    };
    let rank = (*cap).min(*top);
    normalize(owner.iter().copied().filter(|r| *r < rank).chain([rank]).collect())
}

pub fn names(roles: &[Role]) -> Vec<&'static str> {
    roles.iter().map(|r| r.as_str()).collect()
}

pub fn permission_names(roles: &[Role]) -> Vec<&'static str> {
    permissions_of(roles).iter().map(|p| p.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_orders_roles() {
        assert!(Role::Admin > Role::Maintainer && Role::Maintainer > Role::Viewer);
        assert_eq!(permissions_of(&[Role::Viewer, Role::Maintainer]).len(), 5);
        assert!(permissions_of(&[]).is_empty());
    }

    #[test]
    fn narrowing_never_exceeds_the_owner_or_the_key() {
        let admin = [Role::Admin, Role::Viewer];
        assert_eq!(narrow(&admin, Some(&[Role::Viewer])), vec![Role::Viewer]);
        assert_eq!(narrow(&admin, None), admin.to_vec());
        assert_eq!(narrow(&[Role::Viewer], Some(&[Role::Admin])), vec![Role::Viewer]);
        // By rank, not by name: an admin or maintainer narrowed lower holds the lower role.
        assert_eq!(narrow(&[Role::Admin], Some(&[Role::Viewer])), vec![Role::Viewer]);
        assert_eq!(narrow(&[Role::Admin], Some(&[Role::Maintainer, Role::Viewer])), vec![Role::Maintainer]);
        assert_eq!(narrow(&[Role::Maintainer], Some(&[Role::Viewer])), vec![Role::Viewer]);
        assert!(narrow(&[], Some(&[Role::Viewer])).is_empty());
        assert!(narrow(&[Role::Admin], Some(&[])).is_empty());
    }
}
