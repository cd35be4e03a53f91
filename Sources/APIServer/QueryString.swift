import Foundation

/// A URL's query as Go's `url.ParseQuery` reads it (what kube-apiserver sees): pairs split on
/// `&`, `+` as a space, percent escapes decoded; the first value of a repeated key wins. A pair
/// whose escapes do not decode is left out, as Go drops it.
public enum QueryString {
    public static func parse(_ raw: String) -> [String: String] {
        var query: [String: String] = [:]
        for pair in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = decode(parts[0]), let value = decode(parts.count > 1 ? parts[1] : "") else { continue }
            if query[key] == nil { query[key] = value }
        }
        return query
    }

    static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// A boolean parameter as Go's strconv.ParseBool reads it (kube-apiserver's `watch`,
    /// `allowWatchBookmarks`): "1", "t", "T", "true", "TRUE", "True" (the Python client sends "True").
    public static func isTrue(_ value: String?) -> Bool {
        ["1", "t", "T", "true", "TRUE", "True"].contains(value ?? "")
    }
}
