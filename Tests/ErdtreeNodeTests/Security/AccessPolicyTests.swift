import ErdtreeRPC
import Testing

@testable import ErdtreeNode

/// Who may call what (DESIGN §11), role by role, and that a method nobody wrote a rule for is
/// closed to all but admin.
@Suite struct AccessPolicyTests {
    static let cases: [(path: String, allowed: Set<AccessRole>)] = [
        ("/erdtree.v1.KVStore/Get", [.read, .write, .admin]),
        ("/erdtree.v1.KVStore/GetUpdates", [.read, .write, .admin]),
        ("/erdtree.v1.KVStore/Set", [.write, .admin]),
        ("/erdtree.v1.KVStore/Delete", [.write, .admin]),
        ("/erdtree.v1.Admin/Status", [.admin]),
        ("/erdtree.v1.Admin/Failover", [.admin]),
        ("/erdtree.v1.Replication/Replicate", [.admin, .replication]),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", [.read, .write, .admin]),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", [.read, .write, .admin]),
        ("/erdtree.v1.Future/Method", [.admin]),
    ]

    @Test(arguments: cases)
    func eachRoleReachesExactlyItsMethods(path: String, allowed: Set<AccessRole>) throws {
        let requirement = try #require(AccessPolicy.requirement(for: path))
        for role in AccessRole.allCases {
            #expect(role.grants.isSuperset(of: requirement.grant) == allowed.contains(role), "\(role) on \(path)")
        }
    }

    @Test func healthIsOpen() {
        #expect(AccessPolicy.requirement(for: "/grpc.health.v1.Health/Check") == nil)
        #expect(AccessPolicy.requirement(for: "/grpc.health.v1.Health/Watch") == nil)
    }

    @Test func aRefusalNamesTheRolesThatWouldDo() throws {
        let requirement = try #require(AccessPolicy.requirement(for: "/erdtree.v1.KVStore/Set"))
        #expect(requirement.holders == "a token with role write or role admin")
    }
}
