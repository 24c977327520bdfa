// HMAC-SHA256 over OpenSSL: the keyed card tokens of SPEC section 5 and the manifest signature
// of section 6. Keys come from a file named in the configuration, never from the repository.
// An HmacSha256 is not thread-safe (it keeps precomputed digest states); each thread owns one.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/event/event.h"

namespace yrd {

// Smallest key accepted, bytes: shorter keys make card tokens guessable from card numbers.
inline constexpr size_t kHmacKeyBytesMin = 16;

// Reads a file holding a secret (a key, a token): its whole text. Refuses a missing file and one
// readable by others than owner and group; `what` names the file in the errors ("key file").
[[nodiscard]] absl::StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what);

// Reads a key file: hex text (whitespace ignored), at least kHmacKeyBytesMin bytes once decoded.
// Refuses a file readable by others than owner and group.
[[nodiscard]] absl::StatusOr<std::string> ReadKeyFile(const std::string& path);

// True when `presented` equals `expected`, in a time that depends only on the two lengths, never
// on where they differ (OpenSSL's CRYPTO_memcmp): for tokens and signatures an attacker presents.
[[nodiscard]] bool ConstantTimeEquals(std::string_view presented, std::string_view expected);

class HmacSha256 final : public CardTokenizer {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HmacSha256>> Create(std::string_view key);
  ~HmacSha256() override;

  void Mac(std::string_view message, std::array<uint8_t, 32>& mac_out);
  [[nodiscard]] std::string MacHex(std::string_view message);
  void Tokenize(std::string_view card_no, CardToken& token_out) override { Mac(card_no, token_out); }

 private:
  struct Impl;
  explicit HmacSha256(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd
