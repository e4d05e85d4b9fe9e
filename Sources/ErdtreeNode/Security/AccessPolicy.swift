import ErdtreeRPC

/// A token's role (DESIGN §11): what its holder may call.
public enum AccessRole: String, Sendable, Equatable, CaseIterable {
    /// Get, GetUpdates and reflection.
    case read
    /// read, and Set and Delete.
    case write
    /// Everything, Admin included.
    case admin
    /// Replication/Replicate only: what a slave's token needs, and nothing a client does.
    case replication

    var grants: Grants {
        switch self {
        case .read: .read
        case .write: [.read, .write]
        case .admin: [.read, .write, .admin, .replication]
        case .replication: .replication
        }
    }
}

extension Grants {
    static let read = Grants(rawValue: 1 << 0)
    static let write = Grants(rawValue: 1 << 1)
    static let admin = Grants(rawValue: 1 << 2)
    static let replication = Grants(rawValue: 1 << 3)
}

/// Which grant each method needs: the one table of who may call what.
enum AccessPolicy {
    /// Open to anyone: load balancers and orchestrators probe health without a secret.
    static let openServices: Set<Substring> = ["grpc.health.v1.Health"]

    static func requirement(for path: String) -> AccessRequirement? {
        let parts = path.split(separator: "/")
        guard parts.count == 2 else { return admin }
        let (service, method) = (parts[0], parts[1])
        if openServices.contains(service) { return nil }
        switch service {
        case "erdtree.v1.KVStore":
            return method == "Set" || method == "Delete" ? write : read
        case "erdtree.v1.Replication":
            return replication
        case "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection":
            return read
        default:
            // Admin, and whatever is added later without a rule here: closed to all but admin.
            return admin
        }
    }

    private static let read = requirement(.read)
    private static let write = requirement(.write)
    private static let admin = requirement(.admin)
    private static let replication = requirement(.replication)

    /// Names the roles that hold `grant`, for the PERMISSION_DENIED message.
    private static func requirement(_ grant: Grants) -> AccessRequirement {
        let roles = AccessRole.allCases.filter { $0.grants.contains(grant) }.map { "role \($0.rawValue)" }
        let holders =
            roles.count > 1 ? roles.dropLast().joined(separator: ", ") + " or \(roles[roles.count - 1])" : roles[0]
        return AccessRequirement(grant: grant, holders: "a token with \(holders)")
    }
}
