// C trampolines for callbacks into Go: cgo cannot take the address of an
// exported Go function in Go code, and a handle (uintptr_t) must become the
// void * user_data on the C side, not in Go.
#include <stdint.h>
#include "align.h"
#include "_cgo_export.h"

align_status align_go_init(int with_log) {
    return align_init(with_log ? (align_log_fn) alignGoLog : NULL, NULL);
}

align_status align_go_generate(align_session * s, const int32_t * prompt, int32_t n_prompt,
                               const align_sampler_params * p, uintptr_t handle, align_generate_result * res) {
    return align_session_generate(s, prompt, n_prompt, p, (align_token_fn) alignGoToken, (void *) handle, res);
}
