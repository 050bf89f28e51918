import FHIRModel
import Platform

/// The small public national tables the platform ships (ADR 022), loaded through the loader by
/// `huitong terminology load --national` (loading them again writes nothing): sex (GB/T 2261.1-2003), marital status
/// (GB/T 2261.2-2003), ethnicity (GB/T 3304-1991) and identity document type (WS 364.3, CV02.01.101).
/// Classifications under their own licences (ICD-10 and its national clinical edition, LOINC, drug
/// dictionaries) are not shipped: operators load the editions they hold.
public enum ShippedTerminology {
    public static let base = "https://huitong.health/fhir/CodeSystem/"

    /// (code, zh-CN, en)
    static let sex: [(String, String, String)] = [
        ("0", "未知的性别", "Unknown"), ("1", "男", "Male"), ("2", "女", "Female"), ("9", "未说明的性别", "Not stated"),
    ]
    static let marital: [(String, String, String)] = [
        ("10", "未婚", "Unmarried"), ("20", "已婚", "Married"), ("21", "初婚", "First marriage"), ("22", "再婚", "Remarried"),
        ("23", "复婚", "Remarried to a former spouse"), ("30", "丧偶", "Widowed"), ("40", "离婚", "Divorced"),
        ("90", "未说明的婚姻状况", "Not stated"),
    ]
    static let ethnicity: [(String, String, String)] = [
        ("01", "汉族", "Han"), ("02", "蒙古族", "Mongol"), ("03", "回族", "Hui"), ("04", "藏族", "Zang"), ("05", "维吾尔族", "Uygur"),
        ("06", "苗族", "Miao"), ("07", "彝族", "Yi"), ("08", "壮族", "Zhuang"), ("09", "布依族", "Buyei"), ("10", "朝鲜族", "Chosen"),
        ("11", "满族", "Man"), ("12", "侗族", "Dong"), ("13", "瑶族", "Yao"), ("14", "白族", "Bai"), ("15", "土家族", "Tujia"),
        ("16", "哈尼族", "Hani"), ("17", "哈萨克族", "Kazak"), ("18", "傣族", "Dai"), ("19", "黎族", "Li"), ("20", "傈僳族", "Lisu"),
        ("21", "佤族", "Va"), ("22", "畲族", "She"), ("23", "高山族", "Gaoshan"), ("24", "拉祜族", "Lahu"), ("25", "水族", "Sui"),
        ("26", "东乡族", "Dongxiang"), ("27", "纳西族", "Naxi"), ("28", "景颇族", "Jingpo"), ("29", "柯尔克孜族", "Kirgiz"),
        ("30", "土族", "Tu"), ("31", "达斡尔族", "Daur"), ("32", "仫佬族", "Mulao"), ("33", "羌族", "Qiang"), ("34", "布朗族", "Blang"),
        ("35", "撒拉族", "Salar"), ("36", "毛南族", "Maonan"), ("37", "仡佬族", "Gelao"), ("38", "锡伯族", "Xibe"), ("39", "阿昌族", "Achang"),
        ("40", "普米族", "Pumi"), ("41", "塔吉克族", "Tajik"), ("42", "怒族", "Nu"), ("43", "乌孜别克族", "Uzbek"), ("44", "俄罗斯族", "Russ"),
        ("45", "鄂温克族", "Ewenki"), ("46", "德昂族", "Deang"), ("47", "保安族", "Bonan"), ("48", "裕固族", "Yugur"), ("49", "京族", "Gin"),
        ("50", "塔塔尔族", "Tatar"), ("51", "独龙族", "Derung"), ("52", "鄂伦春族", "Oroqen"), ("53", "赫哲族", "Hezhen"),
        ("54", "门巴族", "Monba"), ("55", "珞巴族", "Lhoba"), ("56", "基诺族", "Jino"), ("97", "其他未识别民族", "Other (unrecognised)"),
        ("98", "外国血统中国籍人士", "Chinese citizen of foreign origin"),
    ]
    static let idDocument: [(String, String, String)] = [
        ("01", "居民身份证", "Resident identity card"), ("02", "居民户口簿", "Household register"), ("03", "护照", "Passport"),
        ("04", "军官证", "Military officer's card"), ("05", "驾驶证", "Driving licence"),
        ("06", "港澳居民来往内地通行证", "Mainland travel permit for Hong Kong and Macao residents"),
        ("07", "台湾居民来往内地通行证", "Mainland travel permit for Taiwan residents"), ("99", "其他法定有效证件", "Other legal identity document"),
    ]

    static func codeSystem(id: String, name: String, title: String, standard: String, _ rows: [(String, String, String)]) -> JSONObject {
        JSONObject([
            ("resourceType", .string("CodeSystem")), ("id", .string(id)), ("url", .string(base + id)),
            ("identifier", .array([.object(JSONObject([("value", .string(standard))]))])),
            ("version", .string(standard.split(separator: "-").last.map(String.init) ?? "1")),
            ("name", .string(name)), ("title", .string(title)), ("status", .string("active")), ("experimental", .bool(false)),
            ("publisher", .string("Huitong (from the public national standard)")), ("caseSensitive", .bool(true)),
            ("content", .string("complete")), ("count", .number(String(rows.count))),
            ("concept", .array(rows.map { code, zh, en in
                .object(JSONObject([("code", .string(code)), ("display", .string(zh)),
                                    ("designation", .array([.object(JSONObject([("language", .string("zh-CN")), ("value", .string(zh))])),
                                                            .object(JSONObject([("language", .string("en")), ("value", .string(en))]))]))]))
            })),
        ])
    }

    public static var resources: [JSONObject] {
        [codeSystem(id: "gbt-2261.1", name: "GBT22611Sex", title: "人的性别代码 (GB/T 2261.1)", standard: "GB/T 2261.1-2003", sex),
         codeSystem(id: "gbt-2261.2", name: "GBT22612MaritalStatus", title: "婚姻状况代码 (GB/T 2261.2)", standard: "GB/T 2261.2-2003", marital),
         codeSystem(id: "gbt-3304", name: "GBT3304Ethnicity", title: "中国各民族名称代码 (GB/T 3304)", standard: "GB/T 3304-1991", ethnicity),
         codeSystem(id: "cv02-01-101", name: "IdentityDocumentType", title: "身份证件类别代码 (WS 364.3 CV02.01.101)",
                    standard: "WS 364.3-2011", idDocument)]
    }

    /// Loads what is missing or changed (the platform's principal, through the pipeline).
    public static func load(service: FHIRService) async throws -> [TerminologyLoader.Outcome] {
        let loader = TerminologyLoader(service: service)
        var outcomes: [TerminologyLoader.Outcome] = []
        for resource in resources { outcomes.append(try await loader.load(resource)) }
        return outcomes
    }
}
