/// 用卡环节: where in the care process a card is used, as the national e-health card scheme codes
/// it (seven digits). The codes below are named; other seven-digit codes (regional extensions)
/// are accepted and recorded as given.
public enum CardScene {
    public static let names: [String: (zh: String, en: String)] = [
        "0101011": ("预约挂号", "appointment registration"),
        "0101012": ("当天挂号", "same-day registration"),
        "0101051": ("门诊缴费", "outpatient payment"),
        "0101081": ("检验报告", "laboratory report"),
    ]

    /// Whether `code` has the form of a scene code.
    public static func isValid(_ code: String) -> Bool {
        code.utf8.count == 7 && code.utf8.allSatisfy { (0x30...0x39).contains($0) }
    }
}
