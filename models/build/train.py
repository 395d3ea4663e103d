"""Training loops: supervised or distilled (teacher -> student), magnitude pruning, QAT.

Batches hold augmented images at their stored resolution; each network gets them resized
(half-pixel bilinear, the daemon's preprocessing) to its own input grid inside the step, so the
teacher and the student see the same augmented view and a student never trains on an image
that was resized twice.
"""
from __future__ import annotations

import numpy as np

from .augment import UltrasoundAugment


def make_dataset(tf, x, y, batch: int, seed: int, augment: UltrasoundAugment | None, task: str):
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    if augment is not None:
        if task == "segment":
            ds = ds.map(lambda a, b: augment(a, b))
        else:
            ds = ds.map(lambda a, b: (augment(a), b))
    return ds.prefetch(2)


def build_trainer(tf, net, task: str, teacher=None, alpha: float = 0.5, temperature: float = 4.0,
                  class_weight=None):
    """Wrap `net` in a Keras model whose train_step resizes, distils and applies class weights."""

    class TierTrainer(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.net = net
            self.teacher = teacher
            if teacher is not None:
                teacher.trainable = False
            self.cw = None if class_weight is None else tf.constant(class_weight, tf.float32)
            # Epoch mean for the progress log (a bare returned tensor would report the last batch,
            # often the small remainder one).
            self.loss_mean = tf.keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_mean]

        def call(self, x, training=False):
            return self.net(_fit(x, self.net), training=training)

        def train_step(self, data):
            x, y = data
            xs = _fit(x, self.net)
            t = None
            if self.teacher is not None:
                t = self.teacher(_fit(x, self.teacher), training=False)
            if task == "segment":
                y = tf.image.resize(y, self.net.input_shape[1:3], method="bilinear")
                if t is not None:
                    t = tf.image.resize(t, self.net.input_shape[1:3], method="bilinear")
            with tf.GradientTape() as tape:
                s = self.net(xs, training=True)
                loss = _loss(tf, task, y, s, t, alpha, temperature, self.cw) + tf.add_n(
                    [tf.constant(0.0)] + self.net.losses)
            grads = tape.gradient(loss, self.net.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.net.trainable_variables))
            self.loss_mean.update_state(loss)
            return {"loss": self.loss_mean.result()}

    def _fit(x, model):
        size = model.input_shape[1:3]
        return tf.image.resize(x, size, method="bilinear", antialias=False)

    return TierTrainer()


def _loss(tf, task, y, s, t, alpha, temperature, cw):
    if task == "classify":
        y = tf.cast(y, tf.int32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(y, s)
        if cw is not None:
            ce = ce * tf.gather(cw, y)
        loss = tf.reduce_mean(ce)
        if t is not None:
            # Hinton distillation: KL between temperature-softened distributions, scaled by T^2.
            pt = tf.nn.softmax(t / temperature)
            kl = tf.reduce_sum(pt * (tf.math.log(pt + 1e-8) - tf.nn.log_softmax(s / temperature)), -1)
            loss = alpha * loss + (1 - alpha) * temperature ** 2 * tf.reduce_mean(kl)
        return loss
    bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, s))
    p = tf.sigmoid(s)
    inter = tf.reduce_sum(p * y, [1, 2, 3])
    dice = 1 - tf.reduce_mean((2 * inter + 1) / (tf.reduce_sum(p, [1, 2, 3]) + tf.reduce_sum(y, [1, 2, 3]) + 1))
    loss = bce + dice
    if t is not None:
        kd = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.sigmoid(t / temperature), s / temperature))
        loss = alpha * loss + (1 - alpha) * temperature ** 2 * kd
    return loss


def prunable(tf, net):
    """Kernels worth pruning: 1x1/3x3 convolutions and dense layers with >= 1024 weights.

    Depthwise kernels and the stem are tiny and sensitive; pruning them buys nothing.
    """
    L = tf.keras.layers
    out = []
    for layer in net.layers:
        if isinstance(layer, (L.Conv2D, L.Dense)) and not isinstance(layer, L.DepthwiseConv2D):
            if int(np.prod(layer.kernel.shape)) >= 1024:
                out.append(layer)
    return out


def make_pruning_callback(tf, net, target: float, start_step: int, end_step: int, every: int = 10):
    """Gradual magnitude pruning (Zhu & Gupta 2017): sparsity ramps cubically from 0 to `target`
    between start_step and end_step; the smallest-magnitude weights of each kernel are zeroed and
    held at zero after every batch until training ends."""
    layers = prunable(tf, net)

    class MagnitudePruning(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = 0
            self.masks = {id(l): tf.ones_like(l.kernel) for l in layers}

        def sparsity_at(self, step):
            if step < start_step:
                return 0.0
            p = min(1.0, (step - start_step) / max(1, end_step - start_step))
            return target * (1 - (1 - p) ** 3)

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            s = self.sparsity_at(self.step)
            if s <= 0:
                return
            if self.step % every == 0 or self.step >= end_step:
                for l in layers:
                    w = tf.abs(l.kernel)
                    k = int(s * int(tf.size(w)))
                    if k > 0:
                        thr = tf.sort(tf.reshape(w, [-1]))[k - 1]
                        self.masks[id(l)] = tf.cast(w > thr, w.dtype)
            for l in layers:
                l.kernel.assign(l.kernel * self.masks[id(l)])

    return MagnitudePruning()


def sparsity(tf, net) -> dict:
    layers = prunable(tf, net)
    zeros = sum(int(np.sum(l.kernel.numpy() == 0)) for l in layers)
    total = sum(int(np.prod(l.kernel.shape)) for l in layers)
    params = net.count_params()
    return {"pruned_kernels": round(zeros / max(total, 1), 4), "all_params": round(zeros / max(params, 1), 4)}


def fit(tf, trainer, ds, epochs: int, lr: float, steps_per_epoch: int, callbacks=(), log=None, label="",
        resume: str | None = None):
    """Adam with a cosine schedule; reports each epoch's loss to `log(label, epoch, loss)`.

    `resume`: a directory where the network, the optimizer (its step drives the schedule) and the
    epoch count are saved after every epoch; a rerun continues from the last saved epoch, so a
    phase cut short by the end of a session loses at most one epoch. A finished phase trains no
    further. The shuffling and augmentation draws of a resumed run differ from an uncut one."""
    sched = tf.keras.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch, alpha=0.02)
    opt = tf.keras.optimizers.Adam(sched)
    trainer.compile(optimizer=opt)
    start, manager = 0, None
    if resume:
        done = tf.Variable(0, dtype=tf.int64)
        state = tf.train.Checkpoint(net=trainer.net, optimizer=opt, epoch=done)
        manager = tf.train.CheckpointManager(state, resume, max_to_keep=1)
        if manager.latest_checkpoint:
            # expect_partial: a finished phase never builds the optimizer's slots it would restore.
            state.restore(manager.latest_checkpoint).expect_partial()
            start = int(done.numpy())
            import logging
            logging.getLogger("firmware_py.models.build").info("%s: resumed after epoch %d of %d (%s)",
                                                               label, start, epochs, resume)
    for cb in callbacks:  # a pruning schedule continues where it stopped
        if hasattr(cb, "step"):
            cb.step = start * steps_per_epoch

    class Progress(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if manager is not None:
                done.assign(epoch + 1)
                manager.save()
            if log:
                log(label, epoch + 1, epochs, float(logs["loss"]))

    if start < epochs:
        trainer.fit(ds, epochs=epochs, initial_epoch=start, verbose=0, callbacks=list(callbacks) + [Progress()])


def quantization_aware(tf, net, x, y, task: str, epochs: int, lr: float, batch: int, seed: int,
                       augment=None):
    """Fine-tune with fake-quant nodes (tensorflow-model-optimization). Returns the QAT model."""
    q = _quantize_model(tf, net)
    trainer = build_trainer(tf, q, task)
    ds = make_dataset(tf, x, y, batch, seed, augment, task)
    fit(tf, trainer, ds, epochs, lr, int(np.ceil(len(x) / batch)))
    return q


_OUTPUT_ONLY = None


def _output_only_config():
    """A module-level QuantizeConfig class (Keras deserialises it by name inside quantize_scope)."""
    global _OUTPUT_ONLY
    if _OUTPUT_ONLY is None:
        import tensorflow_model_optimization as tfmot

        Q = tfmot.quantization.keras

        class SEMultiplyQuantizeConfig(Q.QuantizeConfig):
            def get_weights_and_quantizers(self, layer):
                return []

            def get_activations_and_quantizers(self, layer):
                return []

            def set_quantize_weights(self, layer, quantize_weights):
                pass

            def set_quantize_activations(self, layer, quantize_activations):
                pass

            def get_output_quantizers(self, layer):
                return [Q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                            narrow_range=False)]

            def get_config(self):
                return {}

        class HardSigmoidConvQuantizeConfig(SEMultiplyQuantizeConfig):
            """SE gate conv with a hard-sigmoid activation (tfmot only knows relu/sigmoid/...):
            per-channel symmetric weights as tfmot's default conv config, output after the gate."""

            def get_weights_and_quantizers(self, layer):
                return [(layer.kernel, Q.quantizers.LastValueQuantizer(num_bits=8, per_axis=True,
                                                                        symmetric=True, narrow_range=True))]

            def set_quantize_weights(self, layer, quantize_weights):
                layer.kernel = quantize_weights[0]

        _OUTPUT_ONLY = (SEMultiplyQuantizeConfig, HardSigmoidConvQuantizeConfig)
    return _OUTPUT_ONLY


def _quantize_model(tf, net):
    """tfmot quantize_model, plus an output-only quantize config for the squeeze-and-excitation
    Multiply (tfmot has no default for it; the converter quantizes its output the same way)."""
    import tensorflow_model_optimization as tfmot

    Q = tfmot.quantization.keras
    mul_cfg, gate_cfg = _output_only_config()

    def annotate(layer):
        if isinstance(layer, tf.keras.layers.Multiply):
            return Q.quantize_annotate_layer(layer, mul_cfg())
        if getattr(layer, "activation", None) is tf.keras.activations.hard_sigmoid:
            return Q.quantize_annotate_layer(layer, gate_cfg())
        return Q.quantize_annotate_layer(layer)

    annotated = tf.keras.models.clone_model(net, clone_function=annotate)
    with Q.quantize_scope({"SEMultiplyQuantizeConfig": mul_cfg, "HardSigmoidConvQuantizeConfig": gate_cfg}):
        return Q.quantize_apply(annotated)


def recalibrate_bn(tf, net, x: np.ndarray, batch: int = 64):
    """Replace BatchNormalization moving statistics with the training set's population
    statistics (cumulative average over batches, forward passes only).

    The moving averages lag behind the weights while the learning rate is high, and small
    from-scratch nets on a few hundred images are sensitive to that lag: the eval-mode network
    collapsed to one class in our runs while the train-mode one did not.
    """
    bns = [l for l in net.submodules if isinstance(l, tf.keras.layers.BatchNormalization)]
    if not bns:
        return
    saved = [l.momentum for l in bns]
    order = np.random.default_rng(0).permutation(len(x))
    for i, start in enumerate(range(0, len(x), batch)):
        for l in bns:
            l.momentum = i / (i + 1.0)  # 0 on the first batch: a running mean of batch statistics
        net(x[order[start:start + batch]], training=True)
    for l, m in zip(bns, saved):
        l.momentum = m
