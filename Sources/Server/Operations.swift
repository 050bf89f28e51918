import Notifications
import Platform
import Sharing
import Terminology

extension OperationRegistry {
    /// Every operation the platform offers: the core's, then each domain's (ADR 019, ADR 021).
    public static var all: OperationRegistry {
        var registry = OperationRegistry.platform
        registry.registerTerminology()
        registry.registerNotifications()
        registry.registerSharing()
        return registry
    }
}
